//! Deterministic logistic regression for the sentiment head.
//!
//! Binary logistic regression on the raw pooled vectors `x_i` (no standardisation), minimising
//!
//! ```text
//! J(w, b) = (1/n) Σ_i log(1 + exp(-s_i (w·x_i + b)))  +  (l2 / 2n) ‖w‖²,   s_i = ±1
//! ```
//!
//! which has the minimiser of scikit-learn's `LogisticRegression(C = 1/l2)` (the bias is not
//! penalised). The optimiser is full-batch L-BFGS (memory 10) with a backtracking Armijo line
//! search, started from a seeded small random `w`; all arithmetic is sequential f64, so the same
//! data, `l2` and seed give bit-identical weights. The result is written as two logits,
//! `W = [-w/2; w/2]`, `b = [-b/2, b/2]`, whose softmax equals `sigmoid(w·x + b)` for `positive`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::head::LinearHead;
use crate::{Error, Result};

/// Training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Maximum number of L-BFGS iterations (each one full pass or a few for the line search).
    pub max_iterations: usize,
    /// L2 strength on the summed loss (scikit-learn `1/C`).
    pub l2: f64,
    pub seed: u64,
    /// Stop when the largest gradient component of `J` falls below this.
    pub gradient_tolerance: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig { max_iterations: 500, l2: 0.1, seed: 42, gradient_tolerance: 1e-7 }
    }
}

/// How the optimisation went.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    pub iterations: usize,
    pub final_loss: f64,
    pub converged: bool,
}

const HISTORY: usize = 10;
const ARMIJO_C1: f64 = 1e-4;
const MAX_BACKTRACKS: usize = 50;
/// Half-width of the seeded uniform initialisation of `w`.
const INIT_SCALE: f64 = 0.01;

/// Train a head on `features` (one vector per sentence, equal lengths) and labels in {0, 1}.
pub fn train_logistic_head(features: &[Vec<f32>], labels: &[u8], cfg: &TrainConfig) -> Result<(LinearHead, TrainReport)> {
    let problem = Problem::new(features, labels, cfg.l2)?;
    let (theta, report) = minimise(&problem, initial_point(problem.dim, cfg.seed), cfg)?;
    Ok((to_two_logits(&theta)?, report))
}

/// The data in f64, row-major, plus signed labels.
struct Problem {
    n: usize,
    dim: usize,
    x: Vec<f64>,
    sign: Vec<f64>,
    l2: f64,
}

impl Problem {
    fn new(features: &[Vec<f32>], labels: &[u8], l2: f64) -> Result<Problem> {
        let n = features.len();
        if n == 0 {
            return Err(Error::Input("no training sentences".into()));
        }
        if labels.len() != n {
            return Err(Error::Input(format!("{n} feature vectors but {} labels", labels.len())));
        }
        if !(l2.is_finite() && l2 >= 0.0) {
            return Err(Error::Config(format!("--l2 must be a finite non-negative number, got {l2}")));
        }
        let dim = features[0].len();
        if dim == 0 {
            return Err(Error::Input("feature vectors are empty".into()));
        }
        let mut x = Vec::with_capacity(n * dim);
        for (i, f) in features.iter().enumerate() {
            if f.len() != dim {
                return Err(Error::Shape { tensor: format!("features[{i}]"), expected: vec![dim], got: vec![f.len()] });
            }
            if f.iter().any(|v| !v.is_finite()) {
                return Err(Error::Input(format!("feature vector {i} has non-finite values")));
            }
            x.extend(f.iter().map(|v| f64::from(*v)));
        }
        let sign = labels
            .iter()
            .enumerate()
            .map(|(i, l)| match l {
                0 => Ok(-1.0),
                1 => Ok(1.0),
                _ => Err(Error::Input(format!("label {l} of sentence {i} is not 0 or 1"))),
            })
            .collect::<Result<Vec<f64>>>()?;
        Ok(Problem { n, dim, x, sign, l2 })
    }

    /// `J(θ)` and its gradient; `θ = [w (dim), b]`.
    fn loss_and_gradient(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let (w, b) = theta.split_at(self.dim);
        let mut grad = vec![0.0; self.dim + 1];
        let mut loss = 0.0;
        for i in 0..self.n {
            let row = &self.x[i * self.dim..(i + 1) * self.dim];
            let margin = self.sign[i] * (dot(w, row) + b[0]);
            loss += softplus(-margin);
            // d/dmargin log(1 + e^-m) = -sigmoid(-m)
            let coeff = -self.sign[i] * sigmoid(-margin);
            for (g, xv) in grad[..self.dim].iter_mut().zip(row) {
                *g += coeff * xv;
            }
            grad[self.dim] += coeff;
        }
        let inv_n = 1.0 / self.n as f64;
        let reg = self.l2 * inv_n;
        loss = loss * inv_n + 0.5 * reg * dot(w, w);
        for (g, wv) in grad[..self.dim].iter_mut().zip(w) {
            *g = *g * inv_n + reg * wv;
        }
        grad[self.dim] *= inv_n;
        (loss, grad)
    }
}

fn initial_point(dim: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut theta: Vec<f64> = (0..dim).map(|_| rng.random_range(-INIT_SCALE..INIT_SCALE)).collect();
    theta.push(0.0);
    theta
}

/// L-BFGS with backtracking line search.
fn minimise(p: &Problem, mut theta: Vec<f64>, cfg: &TrainConfig) -> Result<(Vec<f64>, TrainReport)> {
    let (mut loss, mut grad) = p.loss_and_gradient(&theta);
    let mut history: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::with_capacity(HISTORY);
    let mut iterations = 0;
    let mut converged = max_abs(&grad) < cfg.gradient_tolerance;
    while !converged && iterations < cfg.max_iterations {
        iterations += 1;
        let mut dir = two_loop_direction(&grad, &history);
        if dot(&dir, &grad) >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            history.clear();
            dir = grad.iter().map(|g| -g).collect();
        }
        let first_step = if history.is_empty() { 1.0 / norm(&grad).max(1e-12) } else { 1.0 };
        let Some((step, new_loss, new_grad)) = line_search(p, &theta, loss, &grad, &dir, first_step) else {
            break; // no decrease possible at machine precision: as good as it gets
        };
        let s: Vec<f64> = dir.iter().map(|d| step * d).collect();
        let y: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        for (t, si) in theta.iter_mut().zip(&s) {
            *t += si;
        }
        let relative_change = (loss - new_loss).abs() / loss.abs().max(1.0);
        loss = new_loss;
        grad = new_grad;
        if sy > 1e-12 {
            if history.len() == HISTORY {
                history.remove(0);
            }
            history.push((s, y, 1.0 / sy));
        }
        converged = max_abs(&grad) < cfg.gradient_tolerance || relative_change < 1e-14;
    }
    if !loss.is_finite() {
        return Err(Error::Input("logistic regression diverged (non-finite loss)".into()));
    }
    Ok((theta, TrainReport { iterations, final_loss: loss, converged }))
}

/// Standard L-BFGS two-loop recursion: `-H·grad` with the initial scaling `sᵀy / yᵀy`.
fn two_loop_direction(grad: &[f64], history: &[(Vec<f64>, Vec<f64>, f64)]) -> Vec<f64> {
    let mut q = grad.to_vec();
    let mut alphas = Vec::with_capacity(history.len());
    for (s, y, rho) in history.iter().rev() {
        let a = rho * dot(s, &q);
        axpy(&mut q, -a, y);
        alphas.push(a);
    }
    if let Some((s, y, _)) = history.last() {
        let gamma = dot(s, y) / dot(y, y).max(1e-300);
        q.iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
        let beta = rho * dot(y, &q);
        axpy(&mut q, a - beta, s);
    }
    q.iter_mut().for_each(|v| *v = -*v);
    q
}

/// Backtracking until the Armijo condition holds; `None` if it never does.
fn line_search(p: &Problem, theta: &[f64], loss: f64, grad: &[f64], dir: &[f64], first: f64) -> Option<(f64, f64, Vec<f64>)> {
    let slope = dot(grad, dir);
    let mut step = first;
    for _ in 0..MAX_BACKTRACKS {
        let trial: Vec<f64> = theta.iter().zip(dir).map(|(t, d)| t + step * d).collect();
        let (l, g) = p.loss_and_gradient(&trial);
        if l.is_finite() && l <= loss + ARMIJO_C1 * step * slope {
            return Some((step, l, g));
        }
        step *= 0.5;
    }
    None
}

/// `[-w/2; w/2]`, `[-b/2, b/2]`: the logit difference is `w·x + b`.
fn to_two_logits(theta: &[f64]) -> Result<LinearHead> {
    let (w, b) = theta.split_at(theta.len() - 1);
    let neg = w.iter().map(|v| (-0.5 * v) as f32);
    let pos = w.iter().map(|v| (0.5 * v) as f32);
    LinearHead::new(w.len(), neg.chain(pos).collect(), [(-0.5 * b[0]) as f32, (0.5 * b[0]) as f32])
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn axpy(y: &mut [f64], a: f64, x: &[f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// `log(1 + e^z)` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_matches_finite_differences() {
        let feats = vec![vec![0.3f32, -1.0], vec![-0.7, 0.2], vec![0.1, 0.9]];
        let p = Problem::new(&feats, &[1, 0, 1], 0.5).unwrap();
        let theta = vec![0.2, -0.4, 0.1];
        let (_, g) = p.loss_and_gradient(&theta);
        for k in 0..3 {
            let h = 1e-6;
            let mut up = theta.clone();
            up[k] += h;
            let mut down = theta.clone();
            down[k] -= h;
            let fd = (p.loss_and_gradient(&up).0 - p.loss_and_gradient(&down).0) / (2.0 * h);
            assert!((fd - g[k]).abs() < 1e-7, "component {k}: {fd} vs {}", g[k]);
        }
    }

    #[test]
    fn softplus_and_sigmoid_are_stable() {
        assert!((softplus(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(softplus(-800.0), 0.0);
        assert_eq!(softplus(800.0), 800.0);
        assert_eq!(sigmoid(-800.0), 0.0);
        assert_eq!(sigmoid(800.0), 1.0);
    }

    #[test]
    fn two_logit_form_matches_binary_margin() {
        let head = to_two_logits(&[1.5, -2.0, 0.25]).unwrap();
        let l = head.logits(&[1.0, 1.0]).unwrap();
        assert!(((l[1] - l[0]) - (1.5 - 2.0 + 0.25)).abs() < 1e-6);
    }

    #[test]
    fn rejects_bad_inputs() {
        let cfg = TrainConfig::default();
        assert!(train_logistic_head(&[], &[], &cfg).is_err());
        assert!(train_logistic_head(&[vec![1.0], vec![1.0, 2.0]], &[0, 1], &cfg).is_err());
        assert!(train_logistic_head(&[vec![1.0]], &[2], &cfg).is_err());
        assert!(train_logistic_head(&[vec![f32::NAN]], &[1], &cfg).is_err());
        let bad_l2 = TrainConfig { l2: -1.0, ..TrainConfig::default() };
        assert!(matches!(train_logistic_head(&[vec![1.0]], &[1], &bad_l2), Err(Error::Config(_))));
    }
}
