//! Offline evaluation on frozen features: the weighted k-NN classifier and the linear probe
//! (multinomial logistic regression trained with SGD as the official `simclr_finetune.py`, on
//! the images of a [`LinearProtocol`] or on cached features), with
//! top-1 / top-5, per-class accuracy and the confusion matrix.

mod classify;
mod pca;
mod probe;
mod record;

pub use classify::{classification, knn_classify, Classification, KnnConfig};
pub use pca::pca_2d;
pub use probe::{epoch_permutation, train_probe, FeatureSet, LinearProbe, ProbeConfig};
pub use record::{
    knn_record, linear_augmented_record, linear_fast_record, EvalRecord, LinearProtocol,
};

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    #[test]
    fn classification_counts_by_hand() {
        // 3 classes, 4 queries: scores rows pick 0, 1, 1, 2; truth 0, 1, 2, 2.
        let scores = Tensor::from_slice(&[
            3.0f32, 2.0, 1.0, //
            0.0, 5.0, 1.0, //
            0.0, 2.0, 1.0, //
            0.0, 1.0, 2.0,
        ])
        .view([4, 3]);
        let labels = Tensor::from_slice(&[0i64, 1, 2, 2]);
        let c = classification(&scores, &labels, 3);
        assert_eq!(c.top1, 0.75);
        // With 3 classes, top-5 covers every class.
        assert_eq!(c.top5, 1.0);
        assert_eq!(c.per_class, vec![1.0, 1.0, 0.5]);
        assert_eq!(c.per_class_count, vec![1, 1, 2]);
        assert_eq!(
            c.confusion,
            vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]
        );
    }

    #[test]
    fn cosine_schedule_per_epoch() {
        let c = ProbeConfig {
            epochs: 4,
            ..ProbeConfig::default()
        };
        assert!((c.lr_at(0) - 0.3).abs() < 1e-15);
        assert!((c.lr_at(2) - 0.15).abs() < 1e-15);
        assert!((c.lr_at(4)).abs() < 1e-15);
    }
}
