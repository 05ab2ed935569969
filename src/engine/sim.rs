//! The fixed-point simulation of a profile: `model::fixed` with the protocols' own cleartext
//! reference functions, so that it computes exactly what the private run computes.
//!
//! Where the profile truncates approximately (`Profile::linear_trunc`: the encoder's products,
//! GeLU's accumulator, SoftMax's exp and normalisation, LayerNorm's rescaling and γ product),
//! a private output is ⌊·⌋ − c per truncated value with c ∈ {0, 1} the carry the protocol
//! drops (⌊·⌋ + 1 − c in SoftMax, which rounds stochastically): [`simulate`] gives the faithful
//! run (every floor exact; c = 0 at the ⌊·⌋ − c sites), and [`simulate_with_carries`] the run
//! with the carries a traced private run actually dropped (`proto::toolkit::trunc::trace`),
//! which that run must equal bit for bit.

use super::state::Specs;
use super::Profile;
use crate::error::{Error, Result};
use crate::he::HeContext;
use crate::model::{CarrySite, CarryTape, FixedModel, FixedNonLinear, LayerNorm, Model, ModelOutput, Tokenized};
use crate::proto::nonlinear::l2norm::reference_l2_normalize;
use crate::proto::nonlinear::layernorm::{reference_layernorm, reference_layernorm_carried, LnCarries};
use crate::proto::nonlinear::softmax::{reference_softmax, reference_softmax_carried, SoftmaxCarries};
use crate::share::FixedPoint;

/// The non-linear functions of a profile as the protocols compute them.
pub struct ProfileNonLinear {
    specs: Specs,
}

impl ProfileNonLinear {
    pub fn new(profile: &Profile, model: &Model) -> Result<ProfileNonLinear> {
        let ctx = HeContext::new(&profile.nonlinear_preset())?;
        Ok(ProfileNonLinear { specs: Specs::new(profile, &model.public.config, ctx.field())? })
    }

    fn check_frac(&self, fp: FixedPoint) -> Result<()> {
        if fp.frac_bits != self.specs.frac {
            return Err(Error::Config(format!("simulation at {} fraction bits, protocols at {}", fp.frac_bits, self.specs.frac)));
        }
        Ok(())
    }
}

impl FixedNonLinear for ProfileNonLinear {
    fn softmax(&self, scores: &[i64], mask: &[u32], fp: FixedPoint) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        reference_softmax(scores, mask, &self.specs.softmax)
    }

    fn gelu(&self, x: &[i64], fp: FixedPoint) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        self.specs.gelu.reference(x)
    }

    fn layer_norm(&self, x: &[i64], ln: &LayerNorm, fp: FixedPoint) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        let (gamma, beta) = ln_slices(ln)?;
        reference_layernorm(x, gamma, beta, ln.eps, &self.specs.layernorm)
    }

    fn tanh(&self, x: &[i64], fp: FixedPoint) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        self.specs.tanh.reference(x)
    }

    fn l2_normalize(&self, x: &[i64], fp: FixedPoint) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        reference_l2_normalize(x, fp.frac_bits)
    }

    fn softmax_carried(&self, scores: &[i64], mask: &[u32], fp: FixedPoint, carries: &[&[u8]]) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        let &[max, knot, h1, h2, h3, exp, out] = carries else {
            return Err(Error::Config(format!("SoftMax takes {} carry sites, got {}", CarrySite::SOFTMAX.len(), carries.len())));
        };
        reference_softmax_carried(scores, mask, &self.specs.softmax, SoftmaxCarries { max, knot, horner: [h1, h2, h3], exp, out })
    }

    fn gelu_carried(&self, x: &[i64], fp: FixedPoint, knot: &[u8]) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        self.specs.gelu.reference_carried(x, knot)
    }

    fn layer_norm_carried(&self, x: &[i64], ln: &LayerNorm, fp: FixedPoint, carries: &[&[u8]]) -> Result<Vec<i64>> {
        self.check_frac(fp)?;
        let &[z, out] = carries else {
            return Err(Error::Config(format!("LayerNorm takes 2 carry sites, got {}", carries.len())));
        };
        let (gamma, beta) = ln_slices(ln)?;
        reference_layernorm_carried(x, gamma, beta, ln.eps, &self.specs.layernorm, LnCarries { z, out })
    }
}

fn ln_slices(ln: &LayerNorm) -> Result<(&[f32], &[f32])> {
    let gamma = ln.gamma.as_slice().ok_or_else(|| Error::Model("LayerNorm γ not contiguous".into()))?;
    let beta = ln.beta.as_slice().ok_or_else(|| Error::Model("LayerNorm β not contiguous".into()))?;
    Ok((gamma, beta))
}

/// The fixed-point simulation of `profile` on `model` (all of its layers; truncate the model
/// with `Model::truncated` to simulate fewer).
pub fn simulate(model: &Model, tok: &Tokenized, profile: &Profile) -> Result<ModelOutput> {
    let nl = ProfileNonLinear::new(profile, model)?;
    FixedModel::new(model, profile.fixed)?.forward_with(tok, &nl)
}

/// [`simulate`] with a private run's dropped carries (one tape layer per simulated layer).
pub fn simulate_with_carries(model: &Model, tok: &Tokenized, profile: &Profile, carries: CarryTape) -> Result<ModelOutput> {
    let nl = ProfileNonLinear::new(profile, model)?;
    FixedModel::new(model, profile.fixed)?.with_carries(carries)?.forward_with(tok, &nl)
}
