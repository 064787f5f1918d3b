//! Which PTX ISA version a CUDA driver loads.
//!
//! cubecl-cuda asks this once per device (`PtxVersion::for_driver(cuDriverGetVersion())`) and
//! keeps the answer in its compilation options and, for the LLVM backend, in its kernel cache's
//! namespace. With NVRTC it is carried but not used; it is still answered correctly here.

use core::fmt;
use std::ffi::CString;

/// A PTX ISA version in the two-digit form of the NVPTX target feature: PTX 8.7 is `87`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PtxVersion(u32);

impl PtxVersion {
    /// The PTX ISA version introduced by the CUDA release of `driver` (as `cuDriverGetVersion`
    /// reports it: 12.8 is `12080`), which that driver and newer ones load. `None` before CUDA
    /// 10.0. Releases newer than the last one listed get that one's version, which they load.
    pub fn for_driver(driver: i32) -> Option<Self> {
        if driver < 10000 {
            return None;
        }
        let major = driver / 1000;
        let minor = (driver % 1000) / 10;
        let version = match (major, minor) {
            // CUDA 10.0, 10.1, 10.2: PTX 6.3, 6.4, 6.5.
            (10, m) => 63 + m.min(2),
            // CUDA 11.x: PTX 7.x (11.8 is the last 11 release).
            (11, m) => 70 + m.min(8),
            // CUDA 12.0 to 12.5: PTX 8.0 to 8.5; 12.6 stayed at 8.5; 12.7, 12.8, 12.9: 8.6 to 8.8.
            (12, m) if m <= 5 => 80 + m,
            (12, 6) => 85,
            (12, m) => 79 + m.min(9),
            // CUDA 13.0 and 13.1: PTX 9.0 and 9.1.
            (13, m) => 90 + m.min(1),
            _ => 91,
        };
        Some(Self(version as u32))
    }

    /// The NVPTX target feature naming this version (`+ptx87`).
    pub fn target_feature(self) -> CString {
        // A formatted number never contains a NUL byte.
        CString::new(format!("+{self}")).unwrap_or_default()
    }
}

impl fmt::Display for PtxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ptx{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_cuda_releases() {
        assert_eq!(PtxVersion::for_driver(9020), None);
        assert_eq!(PtxVersion::for_driver(10000), Some(PtxVersion(63)));
        assert_eq!(PtxVersion::for_driver(10020), Some(PtxVersion(65)));
        assert_eq!(PtxVersion::for_driver(11040), Some(PtxVersion(74)));
        assert_eq!(PtxVersion::for_driver(11080), Some(PtxVersion(78)));
        assert_eq!(PtxVersion::for_driver(12040), Some(PtxVersion(84)));
        assert_eq!(PtxVersion::for_driver(12060), Some(PtxVersion(85)));
        assert_eq!(PtxVersion::for_driver(12080), Some(PtxVersion(87)));
        assert_eq!(PtxVersion::for_driver(12090), Some(PtxVersion(88)));
        // The H200 we are lent: driver 580, CUDA 13.0.
        assert_eq!(PtxVersion::for_driver(13000), Some(PtxVersion(90)));
        assert_eq!(PtxVersion::for_driver(14000), Some(PtxVersion(91)));
    }

    #[test]
    fn feature_and_display_spell_the_version() {
        let v = PtxVersion(87);
        assert_eq!(v.to_string(), "ptx87");
        assert_eq!(v.target_feature().as_c_str(), c"+ptx87");
    }
}
