//! Invariants of the loss family: closed forms on collapsed embeddings, view symmetry,
//! agreement with the slow reference, finite differences, descent, and error messages.

use kinfonce_loss::reference::reference_loss;
use kinfonce_loss::{
    evaluate, ExpKernel, Kernel, LossError, LossSpec, Mat, MatRef, MixtureComponent, Norm, Pairing,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn unit_rows(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Mat<f64> {
    let mut m = Mat::zeros(rows, cols);
    for r in 0..rows {
        let row = m.row_mut(r);
        row.iter_mut().for_each(|v| *v = rng.gen_range(-1.0..1.0));
        let n = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v /= n);
    }
    m
}

fn exp_p(gamma: f64, tau: f64, p: Norm) -> Kernel {
    Kernel::Exp(ExpKernel { gamma, tau, p })
}

/// Every loss kind, with the pairing it is tested in.
fn all_kinds() -> Vec<(&'static str, LossSpec, Pairing)> {
    let k = |g, t| Kernel::exp(g, t);
    let mixture = Kernel::mixture(vec![
        MixtureComponent {
            weight: 0.5,
            kernel: ExpKernel::new(1.0, 0.2),
        },
        MixtureComponent {
            weight: 0.5,
            kernel: ExpKernel::new(2.0, 0.4),
        },
    ]);
    vec![
        ("gaussian", LossSpec::kernel(k(2.0, 0.4)), Pairing::SimClr),
        ("laplacian", LossSpec::kernel(k(1.0, 0.2)), Pairing::SimClr),
        ("exp-0.5", LossSpec::kernel(k(0.5, 0.15)), Pairing::SimClr),
        ("exp-1.5", LossSpec::kernel(k(1.5, 0.3)), Pairing::SimClr),
        (
            "p1",
            LossSpec::kernel(exp_p(1.0, 0.5, Norm::L1)),
            Pairing::SimClr,
        ),
        (
            "pinf",
            LossSpec::kernel(exp_p(1.0, 0.5, Norm::Inf)),
            Pairing::SimClr,
        ),
        (
            "p1-gamma0.7",
            LossSpec::kernel(exp_p(0.7, 0.5, Norm::L1)),
            Pairing::SimClr,
        ),
        (
            "simple-sum",
            LossSpec::kernel(mixture.clone()),
            Pairing::SimClr,
        ),
        (
            "sum-of-losses",
            LossSpec::sum_of_losses(0.3, k(1.0, 0.2), k(2.0, 0.2)).unwrap(),
            Pairing::SimClr,
        ),
        (
            "concat-sum",
            LossSpec::Concat {
                split: 3,
                lambda: 0.5,
                first: k(1.0, 0.2),
                second: k(2.0, 0.2),
            },
            Pairing::SimClr,
        ),
        (
            "acos-1",
            LossSpec::kernel(Kernel::ArcCos { order: 1, tau: 0.5 }),
            Pairing::SimClr,
        ),
        (
            "acos-2",
            LossSpec::kernel(Kernel::ArcCos { order: 2, tau: 0.5 }),
            Pairing::SimClr,
        ),
        (
            "acos-3",
            LossSpec::kernel(Kernel::ArcCos { order: 3, tau: 0.5 }),
            Pairing::SimClr,
        ),
        ("spectral", LossSpec::Spectral, Pairing::SimClr),
        ("moco", LossSpec::kernel(k(1.0, 0.1)), Pairing::Moco),
        ("moco-mixture", LossSpec::kernel(mixture), Pairing::Moco),
        ("clip-gauss", LossSpec::kernel(k(2.0, 0.1)), Pairing::Clip),
        ("clip-laplace", LossSpec::kernel(k(1.0, 0.1)), Pairing::Clip),
        (
            "gathered",
            LossSpec::kernel(k(1.0, 0.2)),
            Pairing::Gathered {
                offset: 2,
                local: 3,
            },
        ),
        (
            "gathered-concat",
            LossSpec::Concat {
                split: 4,
                lambda: 0.7,
                first: k(0.5, 0.2),
                second: k(2.0, 0.3),
            },
            Pairing::Gathered {
                offset: 0,
                local: 2,
            },
        ),
    ]
}

fn inputs_for(rng: &mut ChaCha8Rng, pairing: Pairing, b: usize, d: usize) -> Vec<Mat<f64>> {
    let mut v = vec![unit_rows(rng, b, d), unit_rows(rng, b, d)];
    if pairing == Pairing::Moco {
        v.push(unit_rows(rng, 2 * b + 3, d));
    }
    v
}

fn run(spec: &LossSpec, pairing: Pairing, inputs: &[Mat<f64>]) -> kinfonce_loss::LossOutput<f64> {
    let views: Vec<MatRef<'_, f64>> = inputs.iter().map(Mat::view).collect();
    evaluate(spec, pairing, &views).unwrap()
}

#[test]
fn collapsed_embeddings_give_ln_of_the_candidate_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let b = 7;
    let point = unit_rows(&mut rng, 1, 6);
    let same = |rows| {
        let mut m = Mat::zeros(rows, 6);
        (0..rows).for_each(|r| m.row_mut(r).copy_from_slice(point.row(0)));
        m
    };
    for (name, spec, pairing) in all_kinds() {
        if matches!(spec, LossSpec::Spectral) {
            continue;
        }
        let (inputs, expected) = match pairing {
            Pairing::SimClr => (vec![same(b), same(b)], ((2 * b - 1) as f64).ln()),
            Pairing::Gathered { .. } => (vec![same(b), same(b)], ((2 * b - 1) as f64).ln()),
            Pairing::Moco => (vec![same(b), same(b), same(11)], 11f64.ln()),
            Pairing::Clip => (vec![same(b), same(b)], (b as f64).ln()),
        };
        let out = run(&spec, pairing, &inputs);
        assert!(
            (out.loss - expected).abs() < 1e-12,
            "{name}: {} vs {expected}",
            out.loss
        );
        for g in out.grads.iter().flat_map(|g| &g.data) {
            assert!(
                g.is_finite(),
                "{name}: non-finite gradient on collapsed input"
            );
        }
    }
}

#[test]
fn swapping_the_views_swaps_the_gradients() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (name, spec, pairing) in all_kinds() {
        if !matches!(pairing, Pairing::SimClr | Pairing::Clip) {
            continue;
        }
        let x = inputs_for(&mut rng, pairing, 5, 8);
        let a = run(&spec, pairing, &x);
        let b = run(&spec, pairing, &[x[1].clone(), x[0].clone()]);
        assert!((a.loss - b.loss).abs() < 1e-12, "{name}");
        for (ga, gb) in a.grads[0].data.iter().zip(&b.grads[1].data) {
            assert!((ga - gb).abs() < 1e-12, "{name}");
        }
    }
}

#[test]
fn fused_agrees_with_the_direct_reference_across_tile_boundaries() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // 2B = 300 rows crosses the 64-row and 256-column tiles.
    for (b, d) in [(3, 5), (40, 16), (150, 9)] {
        for (name, spec, pairing) in all_kinds() {
            let pairing = match pairing {
                Pairing::Gathered { .. } => Pairing::Gathered {
                    offset: b / 3,
                    local: b / 2,
                },
                p => p,
            };
            if b < 5 && matches!(spec, LossSpec::Concat { .. }) {
                continue;
            }
            let x = inputs_for(&mut rng, pairing, b, d.max(6));
            let got = run(&spec, pairing, &x).loss;
            let want = reference_loss(&spec, pairing, &x);
            assert!(
                (got - want).abs() < 1e-10 * want.abs().max(1.0),
                "{name} B={b}: fused {got} vs reference {want}"
            );
        }
    }
}

#[test]
fn tau_grid_agrees_with_reference_in_f32_and_f64() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for tau in [1e-3, 0.01, 0.1, 1.0, 10.0] {
        for gamma in [0.5, 1.0, 2.0] {
            let spec = LossSpec::kernel(Kernel::exp(gamma, tau));
            // 140 rows: two square tiles, so both merge paths (factored and not) run.
            let x = inputs_for(&mut rng, Pairing::SimClr, 70, 12);
            let want = reference_loss(&spec, Pairing::SimClr, &x);
            let got64 = run(&spec, Pairing::SimClr, &x).loss;
            assert!(
                (got64 - want).abs() < 1e-9 * want.max(1.0),
                "tau {tau} gamma {gamma}"
            );
            let x32: Vec<Mat<f32>> = x
                .iter()
                .map(|m| Mat {
                    rows: m.rows,
                    cols: m.cols,
                    data: m.data.iter().map(|&v| v as f32).collect(),
                })
                .collect();
            let views: Vec<MatRef<'_, f32>> = x32.iter().map(Mat::view).collect();
            let out = evaluate(&spec, Pairing::SimClr, &views).unwrap();
            assert!(
                out.loss.is_finite()
                    && out
                        .grads
                        .iter()
                        .all(|g| g.data.iter().all(|v| v.is_finite()))
            );
            // f32 inputs carry 6e-8 relative error, amplified by 1 / tau in the logits.
            let tol = 1e-5 * want.max(1.0) * (1.0 / tau).max(1.0);
            assert!(
                (out.loss - want).abs() < tol,
                "f32 tau {tau} gamma {gamma}: {} vs {want}",
                out.loss
            );
        }
    }
}

#[test]
fn gradients_match_central_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (name, spec, pairing) in all_kinds() {
        let x = inputs_for(&mut rng, pairing, 5, 6);
        let out = run(&spec, pairing, &x);
        let h = 1e-6;
        for (k, m) in x.iter().enumerate() {
            for idx in 0..m.data.len() {
                let mut plus = x.clone();
                plus[k].data[idx] += h;
                let mut minus = x.clone();
                minus[k].data[idx] -= h;
                let fd = (run(&spec, pairing, &plus).loss - run(&spec, pairing, &minus).loss)
                    / (2.0 * h);
                let g = out.grads[k].data[idx];
                assert!(
                    (fd - g).abs() < 1e-6 * (1.0 + g.abs()),
                    "{name}: input {k} entry {idx}: analytic {g} vs finite difference {fd}"
                );
            }
        }
    }
}

#[test]
fn twenty_gradient_steps_decrease_every_loss() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for (name, spec, pairing) in all_kinds() {
        let mut x = inputs_for(&mut rng, pairing, 6, 8);
        let start = run(&spec, pairing, &x).loss;
        for _ in 0..20 {
            let out = run(&spec, pairing, &x);
            for (m, g) in x.iter_mut().zip(&out.grads) {
                m.add_scaled(g, -0.02);
            }
        }
        let end = run(&spec, pairing, &x).loss;
        assert!(end < start, "{name}: {start} -> {end}");
    }
}

#[test]
fn bad_inputs_get_typed_errors_naming_the_problem() {
    let z = Mat::<f64>::zeros(4, 3);
    let eval = |spec: &LossSpec, inputs: &[MatRef<'_, f64>]| {
        evaluate(spec, Pairing::SimClr, inputs).unwrap_err()
    };
    let ok = LossSpec::kernel(Kernel::exp(1.0, 0.2));

    let e = eval(
        &LossSpec::kernel(Kernel::exp(2.5, 0.2)),
        &[z.view(), z.view()],
    );
    assert!(
        matches!(e, LossError::Parameter { name: "gamma", .. }),
        "{e}"
    );
    assert!(e.to_string().contains("(0, 2]"));
    let e = eval(
        &LossSpec::kernel(Kernel::exp(1.0, -1.0)),
        &[z.view(), z.view()],
    );
    assert!(
        e.to_string().contains("`tau` = -1") && e.to_string().contains("> 0"),
        "{e}"
    );
    let e = eval(
        &LossSpec::Concat {
            split: 5,
            lambda: 0.5,
            first: Kernel::exp(1.0, 0.2),
            second: Kernel::exp(2.0, 0.2),
        },
        &[z.view(), z.view()],
    );
    assert!(e.to_string().contains("`split` = 5"), "{e}");
    let e = eval(
        &LossSpec::Sum {
            parts: vec![(-0.5, Kernel::exp(1.0, 0.2))],
        },
        &[z.view(), z.view()],
    );
    assert!(e.to_string().contains("`weight`"), "{e}");

    let short = Mat::<f64>::zeros(3, 3);
    let e = eval(&ok, &[z.view(), short.view()]);
    assert!(
        matches!(e, LossError::Shape(_)) && e.to_string().contains("4 and 3"),
        "{e}"
    );
    let narrow = Mat::<f64>::zeros(4, 2);
    assert!(matches!(
        eval(&ok, &[z.view(), narrow.view()]),
        LossError::Shape(_)
    ));
    let empty = Mat::<f64>::zeros(0, 3);
    assert!(matches!(
        eval(&ok, &[empty.view(), empty.view()]),
        LossError::Empty(_)
    ));

    let mut nan = Mat::<f64>::zeros(4, 3);
    nan.row_mut(2)[1] = f64::NAN;
    let e = eval(&ok, &[z.view(), nan.view()]);
    assert_eq!(
        e.to_string(),
        "input `input 1` has a non-finite value NaN at row 2, column 1"
    );
    let mut inf = Mat::<f64>::zeros(4, 3);
    inf.row_mut(0)[0] = f64::INFINITY;
    assert!(matches!(
        eval(&ok, &[inf.view(), z.view()]),
        LossError::NonFinite { .. }
    ));

    let e = evaluate(&LossSpec::Spectral, Pairing::Clip, &[z.view(), z.view()]).unwrap_err();
    assert!(e.to_string().contains("SimCLR pairing only"), "{e}");
    let e = evaluate(
        &ok,
        Pairing::Gathered {
            offset: 3,
            local: 2,
        },
        &[z.view(), z.view()],
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}
