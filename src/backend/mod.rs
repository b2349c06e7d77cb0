//! Backends: one module per backend, each implementing the engine's traits
//! (`Server`, `ClientSnapshotter` and a `ClientFactory` that makes clients).

pub mod bucket;
pub mod embedded;
pub mod fault_kit;
pub mod kopia;
pub mod location;
pub mod process;
pub mod restic;
pub mod s3;
pub mod tls;

/// Which clients a run has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// rustic_core clients, compiled in.
    #[default]
    Embedded,
    /// Debian's `restic` binary as every client.
    Restic,
    /// rustic_core and restic clients, alternating, on one repository.
    Mixed,
    /// The `kopia` program as the server and every client.
    Kopia,
}

impl BackendKind {
    pub const ALL: [BackendKind; 4] = [
        BackendKind::Embedded,
        BackendKind::Restic,
        BackendKind::Mixed,
        BackendKind::Kopia,
    ];

    /// The name on the command line, in the state dir and the report.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Embedded => "embedded",
            BackendKind::Restic => "restic",
            BackendKind::Mixed => "mixed",
            BackendKind::Kopia => "kopia",
        }
    }

    /// Whether its clients include restic processes.
    pub fn runs_restic(self) -> bool {
        matches!(self, BackendKind::Restic | BackendKind::Mixed)
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        BackendKind::ALL
            .into_iter()
            .find(|kind| kind.name() == text)
            .ok_or_else(|| format!("`{text}` is not one of embedded, restic, mixed, kopia"))
    }
}
