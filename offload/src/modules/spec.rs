//! `chain.toml`: a whole chain, first module first, as `chain apply` reads it.
//!
//! ```toml
//! [[module]]
//! file = "ddos.o"      # relative to this file's directory
//! name = "ddos"        # optional: the name in the object's metadata otherwise
//!
//! [[module]]
//! file = "counter.o"
//!
//! [[module]]
//! builtin = "steer"    # a built-in module (`fastpath xdp attach` loads it), kept in place
//! ```
//!
//! An empty file (no `[[module]]`) is a chain without modules: applying it unloads every
//! module and detaches the chain. Every error names the file and the line at fault.

use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use super::{ModuleError, ModuleObject, ops::check_name};

/// A chain file, read and checked, its objects read and checked too.
#[derive(Debug)]
pub struct ChainSpec {
    /// Where it was read from.
    pub path: PathBuf,
    /// The modules in chain order.
    pub modules: Vec<SpecModule>,
}

impl ChainSpec {
    /// The modules in chain order, each with its name in the chain.
    pub fn wanted(&self) -> Vec<(&str, &ModuleObject)> {
        self.modules
            .iter()
            .map(|module| (module.name.as_str(), &module.object))
            .collect()
    }
}

/// One `[[module]]` of a chain file.
#[derive(Debug)]
pub struct SpecModule {
    /// Its name in the chain.
    pub name: String,
    /// Its object, read from `file`.
    pub object: ModuleObject,
    /// The line of its `[[module]]` entry.
    pub line: usize,
    /// Whether it names a built-in module (`builtin = "steer"`) rather than a file.
    pub builtin: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default)]
    module: Vec<Spanned<RawModule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    file: Option<Spanned<PathBuf>>,
    builtin: Option<Spanned<String>>,
    name: Option<Spanned<String>>,
}

impl ChainSpec {
    /// Reads the chain file at `path` and every object it names; built-in modules are
    /// taken in their `frags` flavour (the chain's).
    pub fn read(path: &Path, frags: bool) -> Result<ChainSpec, ModuleError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModuleError::ReadFile {
            file: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        ChainSpec::parse(
            path,
            &text,
            |file| ModuleObject::read(&base.join(file)),
            |name| match name {
                super::builtin::STEER_MODULE => Some(super::builtin::steer_module(frags)),
                _ => None,
            },
        )
    }

    /// Parses chain file `text` (`path` names it in errors), reading objects with `read`
    /// and built-in modules with `builtin` (None: no such built-in).
    pub fn parse(
        path: &Path,
        text: &str,
        read: impl Fn(&Path) -> Result<ModuleObject, ModuleError>,
        builtin: impl Fn(&str) -> Option<Result<ModuleObject, ModuleError>>,
    ) -> Result<ChainSpec, ModuleError> {
        let at = |span: Option<Range<usize>>, reason: String| ModuleError::ChainFile {
            file: path.to_path_buf(),
            line: span.map(|span| line_of(text, span.start)),
            reason,
        };
        let raw: RawSpec =
            toml::from_str(text).map_err(|error| at(error.span(), error.message().to_string()))?;
        let mut modules: Vec<SpecModule> = Vec::new();
        for entry in raw.module {
            let line = line_of(text, entry.span().start);
            let entry_span = entry.span();
            let entry = entry.into_inner();
            let (object, source_span, is_builtin) = match (entry.file, entry.builtin) {
                (Some(file), None) => {
                    let span = file.span();
                    let object =
                        read(file.get_ref()).map_err(|source| ModuleError::InChainFile {
                            file: path.to_path_buf(),
                            line: line_of(text, span.start),
                            source: Box::new(source),
                        })?;
                    (object, span, false)
                }
                (None, Some(name)) => {
                    let span = name.span();
                    let object = builtin(name.get_ref())
                        .ok_or_else(|| {
                            at(
                                Some(span.clone()),
                                format!(
                                    "no built-in module {:?} (built-in: {})",
                                    name.get_ref(),
                                    super::builtin::STEER_MODULE
                                ),
                            )
                        })?
                        .map_err(|source| ModuleError::InChainFile {
                            file: path.to_path_buf(),
                            line: line_of(text, span.start),
                            source: Box::new(source),
                        })?;
                    (object, span, true)
                }
                _ => {
                    return Err(at(
                        Some(entry_span),
                        "a [[module]] names either a `file` or a `builtin`, one of them"
                            .to_string(),
                    ));
                }
            };
            let file_span = source_span;
            let (name, name_span) = match entry.name {
                Some(name) if is_builtin => {
                    return Err(at(
                        Some(name.span()),
                        "a built-in module keeps its own name".to_string(),
                    ));
                }
                Some(name) => (name.get_ref().clone(), name.span()),
                None => (object.name.clone(), file_span),
            };
            check_name(&name).map_err(|source| ModuleError::InChainFile {
                file: path.to_path_buf(),
                line: line_of(text, name_span.start),
                source: Box::new(source),
            })?;
            if let Some(first) = modules.iter().find(|module| module.name == name) {
                return Err(at(
                    Some(name_span),
                    format!(
                        "the name {name:?} is already used by the module on line {}; give one of them another `name`",
                        first.line
                    ),
                ));
            }
            modules.push(SpecModule {
                name,
                object,
                line,
                builtin: is_builtin,
            });
        }
        Ok(ChainSpec {
            path: path.to_path_buf(),
            modules,
        })
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
