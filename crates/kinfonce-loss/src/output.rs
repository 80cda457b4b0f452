//! [`LossOutput`]: what every loss entry point returns.

use crate::matrix::Mat;

/// A loss value (mean over anchors) and d loss / d input for every input, in input order.
#[derive(Debug, Clone)]
pub struct LossOutput<T> {
    pub loss: f64,
    pub grads: Vec<Mat<T>>,
}
