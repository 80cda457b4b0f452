//! The experiments: each has a `XxxConfig` with documented defaults and a `run` that returns a
//! [`Report`](crate::report::Report) of predicted-vs-measured claims and writes plots when given
//! an output folder.
//!
//! The configs serialise with flat keys (the `graph` and `kernel` parts are flattened, so
//! `blocks`, `tau`, ... sit beside `dim` and `seed`): the command line names its flags after
//! these keys and lays the ones given over the serialised `Default`. A partial table should be
//! laid over that full table, not deserialised alone: a flattened part whose keys are all
//! missing takes its own type's default, not the experiment's.

pub mod all;
pub mod batch_size;
pub mod clip;
pub mod common;
pub mod cross_entropy;
pub mod kernels;
pub mod knn_real;
pub mod mrf;
pub mod planted;
pub mod scale;
pub mod spectral_agreement;

#[cfg(test)]
mod tests {
    use serde::{de::DeserializeOwned, Serialize};

    /// The serialised `Default` reads back as itself, and its keys are flat.
    fn round_trip<C: Serialize + DeserializeOwned + Default>(flat_keys: &[&str]) {
        let table = serde_json::to_value(C::default()).unwrap();
        for key in flat_keys {
            assert!(
                table.get(key).is_some(),
                "{key} not a top-level key of {table}"
            );
        }
        let back: C = serde_json::from_value(table.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), table);
    }

    #[test]
    fn configs_round_trip_with_flat_keys() {
        round_trip::<super::mrf::MrfConfig>(&["nodes", "edge_prob", "seed"]);
        round_trip::<super::cross_entropy::CrossEntropyConfig>(&["tau", "samples"]);
        round_trip::<super::planted::PlantedExperimentConfig>(&["blocks", "q", "gamma", "tau"]);
        round_trip::<super::spectral_agreement::SpectralAgreementConfig>(&["ratios", "tau"]);
        round_trip::<super::clip::ClipConfig>(&["per_class", "tau"]);
        round_trip::<super::batch_size::BatchSizeConfig>(&["batches", "block_size", "tau"]);
        round_trip::<super::kernels::KernelsConfig>(&["gammas"]);
        round_trip::<super::scale::ScaleConfig>(&["degree", "lr", "tau"]);
        round_trip::<super::knn_real::KnnRealConfig>(&["neighbours", "tau"]);
    }
}
