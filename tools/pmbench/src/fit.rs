//! Least-squares straight line through measured points (the recovery-time curve of
//! `pmbench ablation`).

use serde::Serialize;

/// `y = intercept + slope · x`, fitted by ordinary least squares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinearFit {
    /// Change of `y` per unit of `x`.
    pub slope: f64,
    /// `y` at `x = 0`.
    pub intercept: f64,
    /// Coefficient of determination: the share of `y`'s variance the line explains
    /// (1 = every point on the line).
    pub r_squared: f64,
    /// Points fitted.
    pub n: usize,
}

/// Why no line could be fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FitError {
    /// Fewer than two points.
    TooFewPoints {
        /// Points given.
        n: usize,
    },
    /// Every point has the same `x`: the slope is undefined.
    NoSpread {
        /// Points given.
        n: usize,
    },
    /// A coordinate is NaN or infinite.
    NotFinite {
        /// Index of the point.
        index: usize,
    },
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FitError::TooFewPoints { n } => write!(f, "{n} point(s): a line needs two"),
            FitError::NoSpread { n } => write!(f, "all {n} points have the same x"),
            FitError::NotFinite { index } => write!(f, "point {index} is not finite"),
        }
    }
}

impl std::error::Error for FitError {}

impl LinearFit {
    /// The least-squares line through `points` (`(x, y)` pairs).
    #[allow(clippy::cast_precision_loss)] // a handful of points
    pub fn of(points: &[(f64, f64)]) -> Result<LinearFit, FitError> {
        let n = points.len();
        if let Some(index) = points
            .iter()
            .position(|(x, y)| !x.is_finite() || !y.is_finite())
        {
            return Err(FitError::NotFinite { index });
        }
        if n < 2 {
            return Err(FitError::TooFewPoints { n });
        }
        let k = n as f64;
        let mx = points.iter().map(|p| p.0).sum::<f64>() / k;
        let my = points.iter().map(|p| p.1).sum::<f64>() / k;
        // Centred sums: numerically stable for large offsets (nanoseconds).
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
        if sxx <= f64::EPSILON * mx.abs().max(1.0) {
            return Err(FitError::NoSpread { n });
        }
        let slope = sxy / sxx;
        let intercept = my - slope * mx;
        let ss_res: f64 = points
            .iter()
            .map(|p| (p.1 - (intercept + slope * p.0)).powi(2))
            .sum();
        // All y equal: a flat line explains them exactly.
        let r_squared = if syy == 0.0 { 1.0 } else { 1.0 - ss_res / syy };
        Ok(LinearFit {
            slope,
            intercept,
            r_squared,
            n,
        })
    }

    /// The line's `y` at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn points_on_a_line_give_that_line_and_r_squared_one() {
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0]
            .iter()
            .map(|&x| (x, 3.5e6 + 1.25e6 * x))
            .collect();
        let f = LinearFit::of(&pts).unwrap();
        assert!(close(f.slope, 1.25e6), "{f:?}");
        assert!(close(f.intercept, 3.5e6), "{f:?}");
        assert!(close(f.r_squared, 1.0), "{f:?}");
        assert_eq!(f.n, 5);
        assert!(close(f.at(32.0), 3.5e6 + 1.25e6 * 32.0));
    }

    #[test]
    fn scattered_points_match_the_textbook_formulas() {
        // x = 1..5, y = 2, 4, 5, 4, 5: slope 0.6, intercept 2.2, R² = 0.6.
        let pts = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 4.0), (5.0, 5.0)];
        let f = LinearFit::of(&pts).unwrap();
        assert!(close(f.slope, 0.6), "{f:?}");
        assert!(close(f.intercept, 2.2), "{f:?}");
        assert!(close(f.r_squared, 0.6), "{f:?}");
    }

    #[test]
    fn a_flat_line_explains_equal_ys_exactly() {
        let f = LinearFit::of(&[(1.0, 7.0), (2.0, 7.0), (3.0, 7.0)]).unwrap();
        assert!(close(f.slope, 0.0));
        assert!(close(f.intercept, 7.0));
        assert!(close(f.r_squared, 1.0));
    }

    #[test]
    fn degenerate_inputs_are_typed_errors() {
        assert_eq!(LinearFit::of(&[]), Err(FitError::TooFewPoints { n: 0 }));
        assert_eq!(
            LinearFit::of(&[(1.0, 2.0)]),
            Err(FitError::TooFewPoints { n: 1 })
        );
        assert_eq!(
            LinearFit::of(&[(4.0, 1.0), (4.0, 9.0)]),
            Err(FitError::NoSpread { n: 2 })
        );
        assert_eq!(
            LinearFit::of(&[(1.0, 1.0), (f64::NAN, 2.0)]),
            Err(FitError::NotFinite { index: 1 })
        );
    }
}
