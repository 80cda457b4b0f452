//! Row-major matrices: an owned [`Mat`] and a borrowed [`MatRef`].

use crate::error::LossError;
use crate::real::Real;

/// A borrowed row-major matrix: `data[r * cols + c]`.
#[derive(Debug, Clone, Copy)]
pub struct MatRef<'a, T> {
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [T],
}

/// An owned row-major matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<'a, T: Real> MatRef<'a, T> {
    /// Views `data` as `rows x cols`; the length must match.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self, LossError> {
        if data.len() != rows * cols {
            return Err(LossError::Shape(format!(
                "a {rows} x {cols} matrix needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }

    #[inline]
    pub fn row(&self, r: usize) -> &'a [T] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Rejects NaN and infinite entries, naming the input, row and column.
    pub fn check_finite(&self, input: &'static str) -> Result<(), LossError> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(LossError::NonFinite {
                input,
                row: i / self.cols.max(1),
                col: i % self.cols.max(1),
                value: self.data[i].to_f64(),
            }),
        }
    }

    /// Copies the columns `from..to` into a new matrix.
    pub fn columns(&self, from: usize, to: usize) -> Mat<T> {
        let mut data = Vec::with_capacity(self.rows * (to - from));
        for r in 0..self.rows {
            data.extend_from_slice(&self.row(r)[from..to]);
        }
        Mat {
            rows: self.rows,
            cols: to - from,
            data,
        }
    }

    pub fn to_owned(&self) -> Mat<T> {
        Mat {
            rows: self.rows,
            cols: self.cols,
            data: self.data.to_vec(),
        }
    }
}

impl<T: Real> Mat<T> {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![T::ZERO; rows * cols],
        }
    }

    /// Builds a matrix from rows of equal length.
    pub fn from_rows(rows: &[Vec<T>]) -> Result<Self, LossError> {
        let cols = rows.first().map_or(0, Vec::len);
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(LossError::Shape(format!(
                "row {i} has {} columns, row 0 has {cols}",
                r.len()
            )));
        }
        Ok(Self {
            rows: rows.len(),
            cols,
            data: rows.concat(),
        })
    }

    pub fn view(&self) -> MatRef<'_, T> {
        MatRef {
            rows: self.rows,
            cols: self.cols,
            data: &self.data,
        }
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[T] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    #[inline]
    pub fn row_mut(&mut self, r: usize) -> &mut [T] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The rows as nested vectors (for JSON).
    pub fn to_rows(&self) -> Vec<Vec<T>> {
        self.data
            .chunks(self.cols.max(1))
            .map(<[T]>::to_vec)
            .collect()
    }

    /// `self += scale * other`, elementwise.
    pub fn add_scaled(&mut self, other: &Mat<T>, scale: T) {
        for (a, b) in self.data.iter_mut().zip(&other.data) {
            *a += scale * *b;
        }
    }

    /// Stacks `top` over `bottom` (same column count).
    pub fn vstack(top: MatRef<'_, T>, bottom: MatRef<'_, T>) -> Self {
        let mut data = Vec::with_capacity(top.data.len() + bottom.data.len());
        data.extend_from_slice(top.data);
        data.extend_from_slice(bottom.data);
        Self {
            rows: top.rows + bottom.rows,
            cols: top.cols,
            data,
        }
    }

    /// Places `part` into the columns starting at `from`.
    pub fn set_columns(&mut self, from: usize, part: &Mat<T>) {
        for r in 0..self.rows {
            self.row_mut(r)[from..from + part.cols].copy_from_slice(part.row(r));
        }
    }

    /// Splits the rows into the first `at` rows and the rest.
    pub fn split_rows(self, at: usize) -> (Mat<T>, Mat<T>) {
        let cols = self.cols;
        let mut top = self.data;
        let bottom = top.split_off(at * cols);
        (
            Mat {
                rows: at,
                cols,
                data: top,
            },
            Mat {
                rows: bottom.len() / cols.max(1),
                cols,
                data: bottom,
            },
        )
    }
}
