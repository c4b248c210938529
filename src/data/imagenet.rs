//! ImageNet's constants, in one place: the 1000 ILSVRC-2012 classes in torchvision's index
//! order, torchvision's normalisation, and the RGB eigen-decomposition used for PCA lighting.

use super::{ClassInfo, DataStats};
use std::path::Path;

/// torchvision's mean 0.485/0.456/0.406 and std 0.229/0.224/0.225 on 0-1 RGB, in 0-255 units.
pub const MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const STD: [f32; 3] = [58.395, 57.12, 57.375];

/// Eigenvalues (0-1 scale) and eigenvectors (columns) of ImageNet's RGB covariance, as
/// fb.resnet.torch gives them (from Krizhevsky's).
pub const PCA_EIGVAL: [f32; 3] = [0.2175, 0.0188, 0.0045];
pub const PCA_EIGVEC: [[f32; 3]; 3] =
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]];

/// `wnid<TAB>name` per line, line order = the standard class index.
pub const CLASS_LIST: &str = include_str!("../../assets/imagenet1k_classes.tsv");

/// The 1000 classes.
pub fn classes() -> Vec<ClassInfo> {
    super::folder::parse_class_list(CLASS_LIST, Path::new("assets/imagenet1k_classes.tsv"))
        .unwrap_or_else(|e| unreachable!("the embedded class list is well formed: {e}"))
}

/// Statistics for images normalised the torchvision way (no mean image: per channel).
pub fn stats(size: usize) -> DataStats {
    DataStats {
        count: 0,
        size,
        mean_image: Vec::new(),
        channel_mean: MEAN,
        channel_std: STD,
        eigval: PCA_EIGVAL,
        eigvec: PCA_EIGVEC,
    }
}
