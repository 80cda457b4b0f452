//! Who is whose positive and who competes: SimCLR, MoCo, CLIP and a gathered slice.
//! Every entry point validates its inputs and returns the loss with one gradient per input.

use crate::error::LossError;
use crate::fused::{infonce_general, infonce_self, InfoNceGrads, Positives};
use crate::kernel::{
    ArcCos, Gaussian, Geometry, Kernel, Laplacian, LogKernel, Mixture, Norm, Power, QuarterPower,
};
use crate::matrix::{Mat, MatRef};
use crate::output::LossOutput;
use crate::real::Real;
use crate::spec::LossSpec;
use crate::spectral::spectral_simclr;

/// Which rows are anchors, which are candidates, and which pairs are positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pairing {
    /// Inputs z1, z2 (B x d): the 2B rows of [z1; z2] are the anchors; each anchor's positive is
    /// its other view and its candidates are the other 2B - 1 rows.
    SimClr,
    /// Inputs query q (B x d), key k (B x d), queue (K x d): -ln( K(q, k) / sum_m K(q, queue_m) );
    /// the positive is not in the denominator.
    Moco,
    /// Inputs a, b (B x d): a_i's softmax runs over b (positive b_i) and b_i's over a; the loss is
    /// the mean of both directions.
    Clip,
    /// Inputs z1_all, z2_all (B_total x d), gathered from every rank; the anchors are this rank's
    /// rows `offset..offset + local` of both views, the candidates all 2 B_total rows (itself
    /// excluded). Gradients are for the gathered inputs.
    Gathered { offset: usize, local: usize },
}

/// SimCLR pairing of two views.
pub fn simclr<T: Real>(
    spec: &LossSpec,
    z1: MatRef<'_, T>,
    z2: MatRef<'_, T>,
) -> Result<LossOutput<T>, LossError> {
    evaluate(spec, Pairing::SimClr, &[z1, z2])
}

/// MoCo pairing: query, key, queue.
pub fn moco<T: Real>(
    kernel: &Kernel,
    q: MatRef<'_, T>,
    k: MatRef<'_, T>,
    queue: MatRef<'_, T>,
) -> Result<LossOutput<T>, LossError> {
    evaluate(
        &LossSpec::kernel(kernel.clone()),
        Pairing::Moco,
        &[q, k, queue],
    )
}

/// CLIP pairing: two modalities, symmetric.
pub fn clip<T: Real>(
    kernel: &Kernel,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
) -> Result<LossOutput<T>, LossError> {
    evaluate(&LossSpec::kernel(kernel.clone()), Pairing::Clip, &[a, b])
}

const NAMES: [&str; 3] = ["input 0", "input 1", "input 2"];

fn check_inputs<T: Real>(pairing: Pairing, inputs: &[MatRef<'_, T>]) -> Result<(), LossError> {
    let expected = if pairing == Pairing::Moco { 3 } else { 2 };
    if inputs.len() != expected {
        return Err(LossError::Shape(format!(
            "{pairing:?} takes {expected} inputs, got {}",
            inputs.len()
        )));
    }
    let d = inputs[0].cols;
    for (i, m) in inputs.iter().enumerate() {
        if m.rows == 0 || m.cols == 0 {
            return Err(LossError::Empty(format!(
                "input {i} is {} x {}: every input needs at least one row and one column",
                m.rows, m.cols
            )));
        }
        if m.cols != d {
            return Err(LossError::Shape(format!(
                "input {i} has {} columns, input 0 has {d}",
                m.cols
            )));
        }
        m.check_finite(NAMES[i])?;
    }
    let (r0, r1) = (inputs[0].rows, inputs[1].rows);
    if r0 != r1 {
        return Err(LossError::Shape(format!(
            "inputs 0 and 1 must have the same number of rows (paired views), got {r0} and {r1}"
        )));
    }
    if let Pairing::Gathered { offset, local } = pairing {
        if local == 0 || offset + local > r0 {
            return Err(LossError::Shape(format!(
                "the local slice {offset}..{} does not fit in the gathered batch of {r0} rows",
                offset + local
            )));
        }
    }
    Ok(())
}

/// Evaluates any loss in any pairing. `inputs` as documented on [`Pairing`].
pub fn evaluate<T: Real>(
    spec: &LossSpec,
    pairing: Pairing,
    inputs: &[MatRef<'_, T>],
) -> Result<LossOutput<T>, LossError> {
    check_inputs(pairing, inputs)?;
    let d = inputs[0].cols;
    spec.validate(d)?;
    match spec {
        LossSpec::InfoNce { kernel } => Ok(kernel_loss(kernel, pairing, inputs)),
        LossSpec::Sum { parts } => {
            let mut total = zero_output(inputs);
            for (w, kernel) in parts {
                let part = kernel_loss(kernel, pairing, inputs);
                accumulate(&mut total, &part, *w);
            }
            Ok(total)
        }
        LossSpec::Concat {
            split,
            lambda,
            first,
            second,
        } => {
            let mut total = zero_output(inputs);
            for (kernel, w, from, to) in [(first, *lambda, 0, *split), (second, 1.0 - lambda, *split, d)] {
                let cols: Vec<Mat<T>> = inputs.iter().map(|m| m.columns(from, to)).collect();
                let views: Vec<MatRef<'_, T>> = cols.iter().map(Mat::view).collect();
                let part = kernel_loss(kernel, pairing, &views);
                total.loss += w * part.loss;
                let w = T::from_f64(w);
                for (g, pg) in total.grads.iter_mut().zip(&part.grads) {
                    let mut scaled = pg.clone();
                    scaled.data.iter_mut().for_each(|v| *v *= w);
                    let mut merged = g.view().columns(from, to);
                    merged.add_scaled(&scaled, T::ONE);
                    g.set_columns(from, &merged);
                }
            }
            Ok(total)
        }
        LossSpec::Spectral => match pairing {
            Pairing::SimClr => Ok(spectral_simclr(inputs[0], inputs[1])?),
            other => Err(LossError::Spec(format!(
                "the spectral contrastive loss is defined for the SimCLR pairing only, not {other:?}"
            ))),
        },
    }
}

fn zero_output<T: Real>(inputs: &[MatRef<'_, T>]) -> LossOutput<T> {
    LossOutput {
        loss: 0.0,
        grads: inputs.iter().map(|m| Mat::zeros(m.rows, m.cols)).collect(),
    }
}

fn accumulate<T: Real>(total: &mut LossOutput<T>, part: &LossOutput<T>, w: f64) {
    total.loss += w * part.loss;
    for (g, pg) in total.grads.iter_mut().zip(&part.grads) {
        g.add_scaled(pg, T::from_f64(w));
    }
}

/// Runs `f` with the monomorphised log-kernel for `kernel`.
trait KernelTask<T: Real> {
    type Out;
    fn run<K: LogKernel<T>>(self, k: &K) -> Self::Out;
}

fn dispatch<T: Real, V: KernelTask<T>>(kernel: &Kernel, task: V) -> V::Out {
    let f = T::from_f64;
    match kernel {
        Kernel::Exp(e) => {
            let inv_tau = f(1.0 / e.tau);
            match e.p {
                Norm::L2 if e.gamma == 2.0 => task.run(&Gaussian { inv_tau }),
                Norm::L2 if e.gamma == 1.0 => task.run(&Laplacian { inv_tau }),
                Norm::L2 if e.gamma == 0.5 => task.run(&QuarterPower { inv_tau }),
                Norm::L2 => task.run(&Power {
                    exponent: f(e.gamma / 2.0),
                    inv_tau,
                    geometry: Geometry::SqEuclid,
                }),
                Norm::L1 | Norm::Inf => task.run(&Power {
                    exponent: f(e.gamma),
                    inv_tau,
                    geometry: if e.p == Norm::L1 {
                        Geometry::L1
                    } else {
                        Geometry::LInf
                    },
                }),
            }
        }
        Kernel::Mixture { components: parts } => {
            let p = parts[0].kernel.p;
            let parts = parts
                .iter()
                .map(|c| {
                    let e = if p == Norm::L2 {
                        c.kernel.gamma / 2.0
                    } else {
                        c.kernel.gamma
                    };
                    (f(c.weight.ln()), f(e), f(1.0 / c.kernel.tau))
                })
                .collect();
            let geometry = match p {
                Norm::L2 => Geometry::SqEuclid,
                Norm::L1 => Geometry::L1,
                Norm::Inf => Geometry::LInf,
            };
            task.run(&Mixture { parts, geometry })
        }
        Kernel::ArcCos { order, tau } => task.run(&ArcCos {
            order: *order,
            tau: f(*tau),
        }),
    }
}

struct SelfTask<'a, T> {
    z: MatRef<'a, T>,
    pos: &'a [usize],
}
impl<T: Real> KernelTask<T> for SelfTask<'_, T> {
    type Out = (f64, Mat<T>);
    fn run<K: LogKernel<T>>(self, k: &K) -> Self::Out {
        infonce_self(k, self.z, self.pos)
    }
}

struct GeneralTask<'a, T> {
    a: MatRef<'a, T>,
    c: MatRef<'a, T>,
    positives: Positives<'a, T>,
    exclude: Option<&'a [usize]>,
}
impl<T: Real> KernelTask<T> for GeneralTask<'_, T> {
    type Out = InfoNceGrads<T>;
    fn run<K: LogKernel<T>>(self, k: &K) -> Self::Out {
        infonce_general(k, self.a, self.c, self.positives, self.exclude)
    }
}

/// General InfoNCE with a kernel: anchors against candidates, `positives` and an optional
/// excluded candidate per anchor. Loss is the mean over anchors. This is the building block of
/// every pairing, exposed for the theory lab (free node embeddings, sampled positives).
///
/// # Shapes
/// anchors: n x d, candidates: m x d, `Positives::Index`: n indices < m, `Positives::Rows`: n x d,
/// exclude: n indices < m.
pub fn infonce<T: Real>(
    kernel: &Kernel,
    anchors: MatRef<'_, T>,
    candidates: MatRef<'_, T>,
    positives: Positives<'_, T>,
    exclude: Option<&[usize]>,
) -> Result<InfoNceGrads<T>, LossError> {
    kernel.validate()?;
    if anchors.rows == 0 || candidates.rows == 0 {
        return Err(LossError::Empty("no anchors or no candidates".into()));
    }
    if anchors.cols != candidates.cols {
        return Err(LossError::Shape(format!(
            "anchors have {} columns, candidates {}",
            anchors.cols, candidates.cols
        )));
    }
    anchors.check_finite("anchors")?;
    candidates.check_finite("candidates")?;
    let n = anchors.rows;
    match positives {
        Positives::Index(p) => {
            if p.len() != n || p.iter().any(|&j| j >= candidates.rows) {
                return Err(LossError::Shape(format!(
                    "positives: need {n} indices below {}",
                    candidates.rows
                )));
            }
        }
        Positives::Rows(r) => {
            if r.rows != n || r.cols != anchors.cols {
                return Err(LossError::Shape(format!(
                    "positive rows are {} x {}, anchors {n} x {}",
                    r.rows, r.cols, anchors.cols
                )));
            }
            r.check_finite("positives")?;
        }
    }
    if let Some(e) = exclude {
        if e.len() != n || e.iter().any(|&j| j >= candidates.rows) {
            return Err(LossError::Shape(format!(
                "exclude: need {n} indices below {}",
                candidates.rows
            )));
        }
    }
    Ok(dispatch(
        kernel,
        GeneralTask {
            a: anchors,
            c: candidates,
            positives,
            exclude,
        },
    ))
}

/// One kernel in one pairing (inputs already checked).
fn kernel_loss<T: Real>(
    kernel: &Kernel,
    pairing: Pairing,
    inputs: &[MatRef<'_, T>],
) -> LossOutput<T> {
    match pairing {
        Pairing::SimClr => {
            let b = inputs[0].rows;
            let z = Mat::vstack(inputs[0], inputs[1]);
            let pos: Vec<usize> = (0..2 * b).map(|i| (i + b) % (2 * b)).collect();
            let (loss, grad) = dispatch(
                kernel,
                SelfTask {
                    z: z.view(),
                    pos: &pos,
                },
            );
            let (g1, g2) = grad.split_rows(b);
            LossOutput {
                loss,
                grads: vec![g1, g2],
            }
        }
        Pairing::Moco => {
            let out = dispatch(
                kernel,
                GeneralTask {
                    a: inputs[0],
                    c: inputs[2],
                    positives: Positives::Rows(inputs[1]),
                    exclude: None,
                },
            );
            LossOutput {
                loss: out.loss,
                grads: vec![out.anchors, out.positives.expect("rows"), out.candidates],
            }
        }
        Pairing::Clip => {
            let b = inputs[0].rows;
            let diag: Vec<usize> = (0..b).collect();
            let run = |a, c| {
                dispatch(
                    kernel,
                    GeneralTask {
                        a,
                        c,
                        positives: Positives::Index(&diag),
                        exclude: None,
                    },
                )
            };
            let ab = run(inputs[0], inputs[1]);
            let ba = run(inputs[1], inputs[0]);
            let half = T::from_f64(0.5);
            let mut ga = ab.anchors;
            ga.add_scaled(&ba.candidates, T::ONE);
            let mut gb = ab.candidates;
            gb.add_scaled(&ba.anchors, T::ONE);
            ga.data
                .iter_mut()
                .chain(gb.data.iter_mut())
                .for_each(|v| *v *= half);
            LossOutput {
                loss: 0.5 * (ab.loss + ba.loss),
                grads: vec![ga, gb],
            }
        }
        Pairing::Gathered { offset, local } => {
            let bt = inputs[0].rows;
            let z = Mat::vstack(inputs[0], inputs[1]);
            // Anchor k < local is row offset + k of view 1, k >= local the same row of view 2.
            let rows: Vec<usize> = (offset..offset + local)
                .chain(bt + offset..bt + offset + local)
                .collect();
            let mut anchors = Mat::zeros(rows.len(), z.cols);
            for (k, &r) in rows.iter().enumerate() {
                anchors.row_mut(k).copy_from_slice(z.row(r));
            }
            let pos: Vec<usize> = rows.iter().map(|&r| (r + bt) % (2 * bt)).collect();
            let out = dispatch(
                kernel,
                GeneralTask {
                    a: anchors.view(),
                    c: z.view(),
                    positives: Positives::Index(&pos),
                    exclude: Some(&rows),
                },
            );
            let mut grad = out.candidates;
            for (k, &r) in rows.iter().enumerate() {
                let src = out.anchors.row(k).to_vec();
                for (g, s) in grad.row_mut(r).iter_mut().zip(src) {
                    *g += s;
                }
            }
            let (g1, g2) = grad.split_rows(bt);
            LossOutput {
                loss: out.loss,
                grads: vec![g1, g2],
            }
        }
    }
}
