//! Changes to a model variant for one run: the switches behind the paper's comparisons (tanh for
//! ReLU, no LRN, no overlapping pools, another dropout) and the recipe's init and input
//! normalisation. A change that would leave the model as it is (an LRN setting on a model
//! without LRN, `--no-overlap-pool` on one whose pools do not overlap) is an error rather than
//! a silent no-op: the run would not be what its command line says.

use super::config::{Init, LayerSpec, ModelConfig};
use crate::data::Normalize;
use crate::kernels::lrn::LrnConvention;

/// What to change; `Default` changes nothing. Each field is named after the `train` flag that
/// sets it, and the errors name the flag.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelChanges {
    /// tanh instead of every ReLU (Figure 1); `false` keeps (or restores) ReLUs.
    pub tanh: bool,
    /// Probability of every dropout layer.
    pub dropout: Option<f32>,
    /// Weight init.
    pub init: Option<Init>,
    /// Input normalisation.
    pub normalize: Option<Normalize>,
    /// Which LRN formula every LRN layer's α means.
    pub lrn: Option<LrnConvention>,
    /// α of every LRN layer (finite, >= 0).
    pub lrn_alpha: Option<f32>,
    /// Remove the LRN layers (section 3.3).
    pub no_lrn: bool,
    /// Every overlapping max-pool (kernel > stride) becomes kernel = stride, padding 0
    /// (section 3.4: 3x3/2 -> 2x2/2, which keeps the paper's and the `cifar` model's sizes).
    pub no_overlap_pool: bool,
}

impl ModelChanges {
    /// The model `m` with these changes, or an error naming the flag that would change nothing
    /// or is out of range.
    pub fn apply(&self, mut m: ModelConfig) -> crate::Result<ModelConfig> {
        let invalid = |msg: String| Err(crate::Error::Invalid(msg));
        let has = |m: &ModelConfig, f: fn(&LayerSpec) -> bool| m.layers.iter().any(f);
        if let Some(p) = self.dropout
            && p != 0.0
            && !has(&m, |l| matches!(l, LayerSpec::Dropout { .. }))
        {
            return invalid(format!("--dropout {p}: the model `{}` has no dropout layers", m.name));
        }
        let lrn_flags =
            [("--lrn", self.lrn.is_some()), ("--lrn-alpha", self.lrn_alpha.is_some()), ("--no-lrn", self.no_lrn)];
        if let Some((flag, _)) = lrn_flags.iter().find(|(_, given)| *given)
            && !has(&m, |l| matches!(l, LayerSpec::Lrn(_)))
        {
            return invalid(format!("{flag}: the model `{}` has no LRN layers", m.name));
        }
        if self.no_lrn && (self.lrn.is_some() || self.lrn_alpha.is_some()) {
            return invalid(
                "--no-lrn removes the LRN layers that --lrn / --lrn-alpha would set: give one or the other".into(),
            );
        }
        if let Some(a) = self.lrn_alpha
            && !(a.is_finite() && a >= 0.0)
        {
            return invalid(format!("--lrn-alpha {a}: must be a finite number >= 0"));
        }
        let overlapping = |l: &LayerSpec| matches!(l, LayerSpec::MaxPool { kernel, stride, .. } if kernel > stride);
        if self.no_overlap_pool && !has(&m, overlapping) {
            return invalid(format!("--no-overlap-pool: the model `{}` has no overlapping pools", m.name));
        }

        m = m.with_activation(self.tanh);
        if self.no_lrn {
            m.layers.retain(|l| !matches!(l, LayerSpec::Lrn(_)));
        }
        for l in &mut m.layers {
            match l {
                LayerSpec::Dropout { p } => *p = self.dropout.unwrap_or(*p),
                LayerSpec::Lrn(p) => {
                    p.convention = self.lrn.unwrap_or(p.convention);
                    p.alpha = self.lrn_alpha.unwrap_or(p.alpha);
                }
                LayerSpec::MaxPool { kernel, stride, pad } if self.no_overlap_pool && *kernel > *stride => {
                    (*kernel, *pad) = (*stride, 0);
                }
                _ => {}
            }
        }
        m.init = self.init.unwrap_or(m.init);
        m.data.normalize = self.normalize.unwrap_or(m.data.normalize);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cifar() -> ModelConfig {
        ModelConfig::variant("cifar").unwrap()
    }

    fn err(c: ModelChanges, m: ModelConfig) -> String {
        c.apply(m).unwrap_err().to_string()
    }

    #[test]
    fn no_change_is_the_identity() {
        for name in ["paper", "cifar", "cifar-4layer", "torchvision"] {
            let m = ModelConfig::variant(name).unwrap();
            assert_eq!(ModelChanges::default().apply(m.clone()).unwrap(), m, "{name}");
        }
    }

    #[test]
    fn no_overlap_pool_turns_3x3_2_into_2x2_2_and_refuses_a_model_without_overlap() {
        let c = ModelChanges { no_overlap_pool: true, ..Default::default() };
        let m = c.apply(cifar()).unwrap();
        let pools: Vec<_> = m.layers.iter().filter(|l| matches!(l, LayerSpec::MaxPool { .. })).collect();
        assert!(!pools.is_empty());
        assert!(pools.iter().all(|l| matches!(l, LayerSpec::MaxPool { kernel: 2, stride: 2, pad: 0 })), "{pools:?}");
        // Its pools no longer overlap: asking again would change nothing.
        assert_eq!(err(c, m), "--no-overlap-pool: the model `cifar` has no overlapping pools");
    }

    #[test]
    fn lrn_changes_set_every_lrn_layer_or_remove_them() {
        let c = ModelChanges { lrn: Some(LrnConvention::Paper), lrn_alpha: Some(0.4), ..Default::default() };
        let m = c.apply(cifar()).unwrap();
        let lrns: Vec<_> =
            m.layers.iter().filter_map(|l| if let LayerSpec::Lrn(p) = l { Some(p) } else { None }).collect();
        assert_eq!(lrns.len(), 2);
        assert!(lrns.iter().all(|p| p.alpha == 0.4 && p.convention == LrnConvention::Paper));
        let m = ModelChanges { no_lrn: true, ..Default::default() }.apply(cifar()).unwrap();
        assert!(!m.layers.iter().any(|l| matches!(l, LayerSpec::Lrn(_))));
        assert_eq!(m.layers.len(), cifar().layers.len() - 2);
    }

    #[test]
    fn refusals_name_the_flag() {
        let four = || ModelConfig::variant("cifar-4layer").unwrap();
        let cases = [
            (
                ModelChanges { dropout: Some(0.5), ..Default::default() },
                four(),
                "--dropout 0.5: the model `cifar-4layer` has no dropout",
            ),
            (
                ModelChanges { lrn_alpha: Some(0.4), ..Default::default() },
                four(),
                "--lrn-alpha: the model `cifar-4layer` has no LRN",
            ),
            (
                ModelChanges { no_lrn: true, ..Default::default() },
                four(),
                "--no-lrn: the model `cifar-4layer` has no LRN",
            ),
            (ModelChanges { no_lrn: true, lrn_alpha: Some(0.4), ..Default::default() }, cifar(), "--no-lrn removes"),
            (ModelChanges { lrn_alpha: Some(-1.0), ..Default::default() }, cifar(), "--lrn-alpha -1: must be"),
            (ModelChanges { lrn_alpha: Some(f32::NAN), ..Default::default() }, cifar(), "--lrn-alpha NaN: must be"),
        ];
        for (c, m, want) in cases {
            let e = err(c, m);
            assert!(e.contains(want), "{e}");
        }
        // Dropout 0 on a model without dropout changes nothing and says so by succeeding unchanged.
        assert_eq!(ModelChanges { dropout: Some(0.0), ..Default::default() }.apply(four()).unwrap(), four());
    }
}
