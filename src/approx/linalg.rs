//! Small dense linear algebra for the fitter: Householder least squares and the affine
//! parametrisation of linear equality constraints. Sizes are tiny (≤ a few hundred rows,
//! ≤ ~10 columns), so clarity wins over blocking; Householder QR is used instead of normal
//! equations because Lawson's weights become very uneven near convergence.

/// Row-major dense matrix.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    pub fn identity(n: usize) -> Self {
        let mut m = Matrix::zeros(n, n);
        for i in 0..n {
            m.set(i, i, 1.0);
        }
        m
    }

    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.cols + j] = v;
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn mul_vec(&self, x: &[f64]) -> Vec<f64> {
        (0..self.rows).map(|i| dot(self.row(i), x)).collect()
    }

    pub fn mul(&self, other: &Matrix) -> Matrix {
        let mut out = Matrix::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.get(i, k);
                if a == 0.0 {
                    continue;
                }
                for j in 0..other.cols {
                    out.data[i * other.cols + j] += a * other.get(k, j);
                }
            }
        }
        out
    }

    fn column(&self, j: usize) -> Vec<f64> {
        (0..self.rows).map(|i| self.get(i, j)).collect()
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Relative threshold under which a pivot of R counts as zero (rank deficiency).
const RANK_TOL: f64 = 1e-11;

/// Householder reflector that maps `x` onto `alpha·e1`; returns (v, alpha) with the reflector
/// I − 2vvᵀ/(vᵀv). `v` is empty when `x` is already zero.
fn reflector(x: &[f64]) -> (Vec<f64>, f64) {
    let norm = dot(x, x).sqrt();
    if norm == 0.0 {
        return (Vec::new(), 0.0);
    }
    let alpha = if x[0] > 0.0 { -norm } else { norm };
    let mut v = x.to_vec();
    v[0] -= alpha;
    (v, alpha)
}

fn apply_reflector(v: &[f64], target: &mut [f64]) {
    let vv = dot(v, v);
    if vv == 0.0 {
        return;
    }
    let s = 2.0 * dot(v, target) / vv;
    for (t, vi) in target.iter_mut().zip(v) {
        *t -= s * vi;
    }
}

/// Solves min ‖A x − b‖₂ by Householder QR. `None` if A has fewer rows than columns or is
/// numerically rank deficient.
pub(crate) fn least_squares(a: &Matrix, b: &[f64]) -> Option<Vec<f64>> {
    let (m, n) = (a.rows, a.cols);
    if m < n || b.len() != m {
        return None;
    }
    let mut cols: Vec<Vec<f64>> = (0..n).map(|j| a.column(j)).collect();
    let scale = cols.iter().map(|c| dot(c, c).sqrt()).fold(0.0, f64::max);
    if scale == 0.0 {
        return if n == 0 { Some(Vec::new()) } else { None };
    }
    let mut rhs = b.to_vec();
    for k in 0..n {
        let (v, alpha) = reflector(&cols[k][k..]);
        if alpha.abs() <= RANK_TOL * scale {
            return None;
        }
        for col in cols.iter_mut().skip(k) {
            apply_reflector(&v, &mut col[k..]);
        }
        apply_reflector(&v, &mut rhs[k..]);
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let tail: f64 = ((i + 1)..n).map(|j| cols[j][i] * x[j]).sum();
        x[i] = (rhs[i] - tail) / cols[i][i];
    }
    Some(x)
}

/// The solutions of C c = d written as c = origin + basis·z for free z.
#[derive(Clone, Debug)]
pub(crate) struct AffineSubspace {
    pub origin: Vec<f64>,
    /// n × (n − p) matrix whose columns span the null space of C.
    pub basis: Matrix,
}

/// Parametrises {c : C c = d} through a QR factorisation of Cᵀ. `None` when the constraints
/// are numerically dependent (then they may be inconsistent, and the caller must drop some).
pub(crate) fn solve_constraints(c: &Matrix, d: &[f64], n: usize) -> Option<AffineSubspace> {
    let p = c.rows;
    if p == 0 {
        return Some(AffineSubspace { origin: vec![0.0; n], basis: Matrix::identity(n) });
    }
    if p > n || c.cols != n || d.len() != p {
        return None;
    }
    // Columns of Cᵀ are the constraint rows.
    let mut cols: Vec<Vec<f64>> = (0..p).map(|i| c.row(i).to_vec()).collect();
    let scale = cols.iter().map(|r| dot(r, r).sqrt()).fold(0.0, f64::max);
    let mut reflectors = Vec::with_capacity(p);
    for k in 0..p {
        let (v, alpha) = reflector(&cols[k][k..]);
        if alpha.abs() <= RANK_TOL * scale {
            return None;
        }
        for col in cols.iter_mut().skip(k) {
            apply_reflector(&v, &mut col[k..]);
        }
        reflectors.push(v);
    }
    // Rᵀ y1 = d by forward substitution (R is upper triangular, stored in cols[j][i], i ≤ j).
    let mut y = vec![0.0; n];
    for i in 0..p {
        let partial: f64 = (0..i).map(|j| cols[i][j] * y[j]).sum();
        y[i] = (d[i] - partial) / cols[i][i];
    }
    // Q = H_1 ⋯ H_p; apply to vectors from the last reflector to the first.
    let apply_q = |vec: &mut Vec<f64>| {
        for (k, v) in reflectors.iter().enumerate().rev() {
            apply_reflector(v, &mut vec[k..]);
        }
    };
    let mut origin = y;
    apply_q(&mut origin);
    let mut basis = Matrix::zeros(n, n - p);
    for j in 0..(n - p) {
        let mut e = vec![0.0; n];
        e[p + j] = 1.0;
        apply_q(&mut e);
        for (i, value) in e.into_iter().enumerate() {
            basis.set(i, j, value);
        }
    }
    Some(AffineSubspace { origin, basis })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_squares_solves_overdetermined_consistent_system() {
        // y = 1 + 2x + 3x² sampled at 5 points.
        let xs = [-1.0, -0.5, 0.0, 0.5, 1.0];
        let mut a = Matrix::zeros(5, 3);
        let mut b = vec![0.0; 5];
        for (i, &x) in xs.iter().enumerate() {
            a.set(i, 0, 1.0);
            a.set(i, 1, x);
            a.set(i, 2, x * x);
            b[i] = 1.0 + 2.0 * x + 3.0 * x * x;
        }
        let sol = least_squares(&a, &b).unwrap();
        for (s, e) in sol.iter().zip([1.0, 2.0, 3.0]) {
            assert!((s - e).abs() < 1e-12);
        }
    }

    #[test]
    fn least_squares_reports_rank_deficiency() {
        let mut a = Matrix::zeros(3, 2);
        for i in 0..3 {
            a.set(i, 0, 1.0);
            a.set(i, 1, 2.0);
        }
        assert!(least_squares(&a, &[1.0, 1.0, 1.0]).is_none());
    }

    #[test]
    fn constraint_parametrisation_satisfies_constraints() {
        let mut c = Matrix::zeros(2, 4);
        c.data = vec![1.0, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0];
        let d = [3.0, -1.0];
        let sub = solve_constraints(&c, &d, 4).unwrap();
        for z in [[0.0, 0.0], [1.5, -2.0]] {
            let mut x = sub.origin.clone();
            let bz = sub.basis.mul_vec(&z);
            for (xi, b) in x.iter_mut().zip(bz) {
                *xi += b;
            }
            let cx = c.mul_vec(&x);
            assert!((cx[0] - 3.0).abs() < 1e-12 && (cx[1] + 1.0).abs() < 1e-12);
        }
    }
}
