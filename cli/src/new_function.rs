//! `gorgon new function NAME`: generates a custom-processor crate with one function.
//!
//! The crate is shaped after `examples/custom-processor`: a library holding the function and a
//! registry of it beside the built-ins, a processor binary running that registry, a test that
//! calls the function directly (no Redis), a Procfile line and a README. It depends on the
//! Gorgon crates by absolute path into the checkout, and on the other crates with the versions
//! of the checkout's `[workspace.dependencies]`, read at generation time.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use protocol::{validate_slug, MAX_SLUG_LEN, SLUG_PATTERN};

/// Type names the generated code or the Rust prelude already uses. A function whose type name
/// would be one of them gets `Function` appended (`value` → `ValueFunction`), so that the
/// generated code compiles whatever the name.
const TAKEN_TYPE_NAMES: &[&str] = &[
    // Imported by the generated files.
    "Function",
    "FunctionError",
    "Input",
    "Map",
    "NodeContext",
    "Param",
    "ParamKind",
    "Registry",
    "Value",
    // The Rust prelude, and `Self`.
    "AsMut",
    "AsRef",
    "Box",
    "Clone",
    "Copy",
    "Default",
    "DoubleEndedIterator",
    "Drop",
    "Eq",
    "Err",
    "ExactSizeIterator",
    "Extend",
    "Fn",
    "FnMut",
    "FnOnce",
    "From",
    "FromIterator",
    "Future",
    "Into",
    "IntoFuture",
    "IntoIterator",
    "Iterator",
    "None",
    "Ok",
    "Option",
    "Ord",
    "PartialEq",
    "PartialOrd",
    "Result",
    "Self",
    "Send",
    "Sized",
    "Some",
    "String",
    "Sync",
    "ToOwned",
    "ToString",
    "TryFrom",
    "TryInto",
    "Unpin",
    "Vec",
];

/// The crates the generated crate takes from crates.io, with the version requirements and
/// features of Gorgon's `[workspace.dependencies]`.
const REGISTRY_DEPENDENCIES: &[&str] = &["anyhow", "clap", "serde_json", "tokio"];

/// The Gorgon crates the generated crate depends on, by path in the checkout.
const GORGON_DEPENDENCIES: &[(&str, &str)] = &[
    ("processor", "roles/processor"),
    ("protocol", "roles/protocol"),
    ("runtime", "roles/runtime"),
];

/// Generates the crate for function `name` in `parent/<name>`, depending on the Gorgon
/// source checkout at `gorgon`; answers the crate's directory.
pub fn generate(name: &str, parent: &Path, gorgon: &Path) -> anyhow::Result<PathBuf> {
    validate_name(name)?;
    let dir = parent.join(name);
    let already_exists = || {
        anyhow::anyhow!(
            "{} already exists; remove it, or pick another name or directory",
            dir.display()
        )
    };
    if fs::symlink_metadata(&dir).is_ok() {
        return Err(already_exists());
    }
    // Everything that can fail for a reason other than I/O on the new directory fails here,
    // before the directory is made.
    let names = Names::new(name);
    let files = files(&names, &manifest(&names, gorgon)?);
    fs::create_dir_all(parent).with_context(|| format!("could not create {}", parent.display()))?;
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => return Err(already_exists()),
        Err(error) => {
            return Err(error).with_context(|| format!("could not create {}", dir.display()))
        }
    }
    // The Procfile line names the binary by its absolute path: it goes into Gorgon's
    // Procfile, which runs from the Gorgon checkout.
    let written = fs::canonicalize(&dir)
        .with_context(|| format!("could not read the path of {}", dir.display()))
        .and_then(|home| {
            let procfile = names
                .fill(PROCFILE)
                .replace("@HOME@", &home.display().to_string());
            let mut files = files;
            files.push((PathBuf::from("Procfile"), procfile));
            write_files(&dir, &files)
        });
    if let Err(error) = written {
        // The directory is ours (it did not exist a moment ago): leave nothing half-written.
        let _ = fs::remove_dir_all(&dir);
        return Err(error);
    }
    Ok(dir)
}

/// Refuses a name that is not a slug, or that a built-in function already has.
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    if let Err(error) = validate_slug(name) {
        bail!(
            "function name {:?} is not usable: {}; a function name must match {SLUG_PATTERN} \
             (lower-case letters, digits and single hyphens, starting with a letter) and be at \
             most {MAX_SLUG_LEN} characters, e.g. \"heat-index\"",
            error.given,
            error.reason,
        );
    }
    // The generated registry adds the function beside the built-ins: one of their names
    // would make it fail at start-up.
    let builtins = functions::Registry::builtins();
    if builtins.contains(name) {
        bail!(
            "function name {name:?} is taken by a built-in function; pick another name (the \
             built-ins are {})",
            builtins.names().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The names derived from the function name, each where Rust or Cargo needs it.
struct Names {
    /// The function name, a slug: `heat-index`.
    function: String,
    /// The package and binary name: `heat-index-processor`.
    package: String,
    /// The library's crate name: `heat_index_processor`.
    library: String,
    /// The struct implementing the function: `HeatIndex`.
    type_name: String,
    /// The integration test's file stem: `heat_index`.
    test: String,
}

impl Names {
    /// The names for the function `function`, a valid slug.
    fn new(function: &str) -> Self {
        let package = format!("{function}-processor");
        let mut type_name: String = function
            .split('-')
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect();
        if TAKEN_TYPE_NAMES.contains(&type_name.as_str()) {
            type_name.push_str("Function");
        }
        Self {
            function: function.to_owned(),
            library: package.replace('-', "_"),
            package,
            type_name,
            test: function.replace('-', "_"),
        }
    }

    /// `template` with each `@TOKEN@` replaced by its name.
    fn fill(&self, template: &str) -> String {
        template
            .replace("@NAME@", &self.function)
            .replace("@PACKAGE@", &self.package)
            .replace("@LIBRARY@", &self.library)
            .replace("@TYPE@", &self.type_name)
            .replace("@TEST@", &self.test)
    }
}

/// The generated crate's `Cargo.toml`: the Gorgon crates by canonical path into `gorgon`, the
/// others as in `gorgon`'s `[workspace.dependencies]`.
fn manifest(names: &Names, gorgon: &Path) -> anyhow::Result<String> {
    let not_gorgon = |missing: &Path| {
        format!(
            "{} does not look like a Gorgon source checkout: {} is missing or unreadable \
             (give the checkout with --gorgon-path or GORGON_SOURCE)",
            gorgon.display(),
            missing.display()
        )
    };
    let workspace_manifest = gorgon.join("Cargo.toml");
    let text =
        fs::read_to_string(&workspace_manifest).with_context(|| not_gorgon(&workspace_manifest))?;
    let workspace: toml::Table = text
        .parse()
        .with_context(|| format!("could not parse {}", workspace_manifest.display()))?;
    let workspace = workspace
        .get("workspace")
        .and_then(toml::Value::as_table)
        .with_context(|| format!("{} has no [workspace]", workspace_manifest.display()))?;
    let package = workspace.get("package").and_then(toml::Value::as_table);
    let edition = package
        .and_then(|package| package.get("edition"))
        .and_then(toml::Value::as_str)
        .unwrap_or("2021");
    let rust_version = package
        .and_then(|package| package.get("rust-version"))
        .and_then(toml::Value::as_str)
        .map(|version| format!("rust-version = {}\n", toml_string(version)))
        .unwrap_or_default();
    let shared = workspace
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .with_context(|| {
            format!(
                "{} has no [workspace.dependencies]",
                workspace_manifest.display()
            )
        })?;

    let mut dependencies = Vec::new();
    for crate_name in REGISTRY_DEPENDENCIES {
        let entry = registry_dependency(shared, crate_name)
            .with_context(|| format!("reading {}", workspace_manifest.display()))?;
        dependencies.push((crate_name.to_string(), entry));
    }
    for (crate_name, relative) in GORGON_DEPENDENCIES {
        let path = gorgon.join(relative);
        let path = fs::canonicalize(&path).with_context(|| not_gorgon(&path))?;
        let path = path
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", path.display()))?;
        dependencies.push((
            crate_name.to_string(),
            format!("{{ path = {} }}", toml_string(path)),
        ));
    }
    dependencies.sort();
    let dependencies: String = dependencies
        .iter()
        .map(|(crate_name, entry)| format!("{crate_name} = {entry}\n"))
        .collect();

    Ok(format!(
        "# Generated by `gorgon new function {name}`. The Gorgon crates come by path from the \
         checkout;\n\
         # the other versions and features are those of its Cargo.toml.\n\
         \n\
         [package]\n\
         name = \"{package}\"\n\
         description = \"A Gorgon processor with the function {name} beside the built-ins\"\n\
         version = \"0.1.0\"\n\
         edition = {edition}\n\
         {rust_version}\
         publish = false\n\
         \n\
         [dependencies]\n\
         {dependencies}\
         \n\
         # A workspace of its own, so that it is never taken for a member of an enclosing one.\n\
         [workspace]\n",
        name = names.function,
        package = names.package,
        edition = toml_string(edition),
    ))
}

/// The `[dependencies]` entry for `crate_name`: version, default features and features of its
/// `[workspace.dependencies]` entry in `shared`, as an inline TOML value.
fn registry_dependency(shared: &toml::Table, crate_name: &str) -> anyhow::Result<String> {
    let entry = shared
        .get(crate_name)
        .with_context(|| format!("[workspace.dependencies] has no {crate_name}"))?;
    let copied = match entry {
        toml::Value::String(_) => entry.clone(),
        toml::Value::Table(table) => {
            let mut copied = toml::Table::new();
            for key in ["version", "default-features", "features"] {
                if let Some(value) = table.get(key) {
                    copied.insert(key.to_owned(), value.clone());
                }
            }
            if !copied.contains_key("version") {
                bail!("[workspace.dependencies] gives {crate_name} no version");
            }
            toml::Value::Table(copied)
        }
        _ => bail!("[workspace.dependencies] has a {crate_name} that is not a version or a table"),
    };
    Ok(copied.to_string())
}

/// `text` as a TOML string, quoted and escaped.
fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// Every file of the crate: its path in the crate and its contents.
fn files(names: &Names, manifest: &str) -> Vec<(PathBuf, String)> {
    vec![
        (PathBuf::from("Cargo.toml"), manifest.to_owned()),
        (PathBuf::from(".gitignore"), "/target\n".to_owned()),
        (PathBuf::from("README.md"), names.fill(README)),
        (PathBuf::from("src/lib.rs"), names.fill(LIB_RS)),
        (PathBuf::from("src/main.rs"), names.fill(MAIN_RS)),
        (
            PathBuf::from(format!("tests/{}.rs", names.test)),
            names.fill(TEST_RS),
        ),
    ]
}

/// Writes `files` under `dir`, making their directories.
fn write_files(dir: &Path, files: &[(PathBuf, String)]) -> anyhow::Result<()> {
    for (relative, contents) in files {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        fs::write(&path, contents)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    Ok(())
}

const PROCFILE: &str = "\
# Replaces the `processor` line of Gorgon's Procfile: Gorgon's processor plus `@NAME@`
# (build it first: cargo build --release).
processor: exec @HOME@/target/release/@PACKAGE@
";

const README: &str = r#"# @PACKAGE@

Gorgon's processor with one function of its own, `@NAME@`, beside the built-ins.
Generated by `gorgon new function @NAME@`.

## Where to edit

- `src/lib.rs`: the function, `@TYPE@`. As generated, it outputs the value at its `field`
  setting (a JSON pointer; `""` is the whole message) wrapped as `{"@NAME@": value}`.
  Put what your function does in `call`, and say it in `description` and `params`.
- `tests/@TEST@.rs`: calls the function directly, without Redis; update its expected output.
- `Cargo.toml`: the Gorgon crates come by path from the checkout this was generated from;
  after moving the checkout, fix those paths.

## Build, test, run

```sh
cargo test                   # the function's test; needs no Redis
cargo build --release        # ./target/release/@PACKAGE@
REDIS_URL=redis://127.0.0.1:6379 ./target/release/@PACKAGE@
```

The binary takes the flags and environment variables of Gorgon's `processor`
(`./target/release/@PACKAGE@ --help`).
In a mesh, run it instead of `processor`, not beside it: processors share the partitions, so
each one must know every function the topologies use.
`Procfile` holds the line that replaces the `processor` line of Gorgon's Procfile; it names
the release binary by its absolute path, so build it first.
Once it runs, a node can use it: `{"function": "@NAME@", "attrs": {"field": "/reading"}}`.
"#;

const LIB_RS: &str = r#"//! @PACKAGE@: Gorgon's processor with the function `@NAME@` beside the built-ins.
//!
//! The function is [`@TYPE@`], an implementation of [`processor::Function`]; [`registry`]
//! holds it and the built-ins, and the binary (`src/main.rs`) runs the processor with that
//! registry, in place of Gorgon's own `processor`.
//!
//! Layout: `src/lib.rs` (the function and the registry), `src/main.rs` (the binary),
//! `tests/@TEST@.rs` (the function called directly, without Redis).

#![cfg_attr(not(test), warn(clippy::print_stdout))]

use processor::{Function, FunctionError, Input, NodeContext, Param, ParamKind, Registry};
use serde_json::{json, Value};

/// The function `@NAME@`: outputs the value at `field` (a JSON pointer into the message, `""`
/// for the whole message) wrapped as `{"@NAME@": value}`, and fails, naming the pointer, when
/// the message has nothing there.
///
/// This is a starting point to replace: put what your function does in `call`, say it in
/// `description`, and declare in `params` the settings it reads ([`Param::setting`]) and the
/// state it keeps in the node's attributes ([`Param::state`]). Then update the expected output
/// in `tests/@TEST@.rs`.
pub struct @TYPE@;

impl Function for @TYPE@ {
    fn name(&self) -> &str {
        "@NAME@"
    }

    fn description(&self) -> &str {
        "Outputs the value at field wrapped as {\"@NAME@\": value}."
    }

    fn params(&self) -> Vec<Param> {
        vec![Param::setting(
            "field",
            ParamKind::Pointer,
            "JSON pointer to the value to pass on; \"\" is the whole message.",
        )
        .with_default("")]
    }

    // Runs once per message the node receives. It must be deterministic given the message, the
    // attributes and `ctx.now_ms` (a message can be processed again after a crash), and must
    // return an error rather than panic on bad data: the processor retries the message, then
    // dead-letters it with the error's text.
    fn call(
        &self,
        input: &Input<'_>,
        ctx: &mut NodeContext<'_>,
    ) -> Result<Vec<Value>, FunctionError> {
        let value = ctx.field(input.data)?;
        Ok(vec![json!({ "@NAME@": value })])
    }
}

/// The built-in functions plus [`@TYPE@`]: what the binary runs.
pub fn registry() -> Registry {
    let mut registry = Registry::builtins();
    registry
        .register(@TYPE@)
        .expect("no built-in function is called @NAME@");
    registry
}
"#;

const MAIN_RS: &str = r#"//! The @PACKAGE@ binary: Gorgon's processor with the function `@NAME@` beside the
//! built-ins, until SIGTERM or Ctrl-C. Run it instead of `processor`, with the same flags and
//! environment (see `Procfile`).
//!
//! Run with: `cargo run --release`

use clap::Parser as _;
use processor::Config;
use protocol::roles::PROCESSOR;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _role_span = runtime::init_tracing(PROCESSOR, &config.log);
    let token = runtime::shutdown_token();
    processor::run_with(config, @LIBRARY@::registry(), token).await
}
"#;

const TEST_RS: &str = r#"//! `@NAME@` called directly, without Redis, and found in the processor's registry.

use processor::{Function as _, Input, NodeContext, ParamKind};
use serde_json::{json, Map};

use @LIBRARY@::{registry, @TYPE@};

/// The value at `field` comes out wrapped under the function's name; a message without it is
/// an error naming the pointer; the registry holds the function, as declared, and the built-ins.
#[test]
fn wraps_the_value_at_field() {
    let mut attrs = Map::new();
    attrs.insert("field".to_owned(), json!("/reading"));
    let mut ctx = NodeContext {
        topology: "home",
        node: "kitchen",
        sources: &[],
        attrs: &mut attrs,
        now_ms: 0,
    };
    let data = json!({"reading": {"celsius": 21.5}, "room": "kitchen"});
    let input = Input {
        data: &data,
        source: None,
        msg_id: "m1",
        input_id: "i1",
    };
    assert_eq!(
        @TYPE@.call(&input, &mut ctx).unwrap(),
        [json!({"@NAME@": {"celsius": 21.5}})]
    );

    let data = json!({"room": "kitchen"});
    let input = Input {
        data: &data,
        ..input
    };
    assert_eq!(
        @TYPE@.call(&input, &mut ctx).unwrap_err().message(),
        "field \"/reading\" is missing from the message"
    );

    let registry = registry();
    assert!(registry.contains("count"), "the built-ins are kept");
    let params = registry.get("@NAME@").expect("registered").params();
    assert_eq!(params.len(), 1);
    assert_eq!(params[0].name, "field");
    assert_eq!(params[0].kind, ParamKind::Pointer);
    assert_eq!(params[0].default, Some(json!("")));
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Instant;

    /// The Gorgon checkout this crate is part of.
    fn gorgon_checkout() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Names that are not slugs or are taken by a built-in are refused with the rule, and an
    /// existing directory is refused and left alone; none of them creates anything.
    #[test]
    fn refuses_bad_names_and_existing_directories() {
        let parent = tempfile::tempdir().unwrap();
        let gorgon = gorgon_checkout();
        let refusal = |name: &str| {
            generate(name, parent.path(), &gorgon)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refusal("Heat"),
            "function name \"Heat\" is not usable: it must start with a lower-case letter; a \
             function name must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ (lower-case letters, \
             digits and single hyphens, starting with a letter) and be at most 64 characters, \
             e.g. \"heat-index\""
        );
        for (name, reason) in [
            ("", "it is empty"),
            ("1heat", "it must start with a lower-case letter"),
            ("heat_index", "it has a character other than a-z, 0-9 and -"),
            ("heat index", "it has a character other than a-z, 0-9 and -"),
            ("heat--index", "it has two hyphens in a row"),
            ("heat-", "it ends with a hyphen"),
            (&"h".repeat(65), "it is longer than 64 characters"),
        ] {
            let message = refusal(name);
            assert!(message.contains(reason), "{name:?}: {message}");
            assert!(
                message.contains("^[a-z][a-z0-9]*(-[a-z0-9]+)*$"),
                "{message}"
            );
        }
        let message = refusal("moving-average");
        assert!(
            message.starts_with(
                "function name \"moving-average\" is taken by a built-in function; pick another"
            ),
            "{message}"
        );
        assert_eq!(fs::read_dir(parent.path()).unwrap().count(), 0);

        let existing = parent.path().join("heat-index");
        fs::create_dir(&existing).unwrap();
        fs::write(existing.join("mine.txt"), "keep me").unwrap();
        assert_eq!(
            refusal("heat-index"),
            format!(
                "{} already exists; remove it, or pick another name or directory",
                existing.display()
            )
        );
        assert_eq!(
            fs::read_to_string(existing.join("mine.txt")).unwrap(),
            "keep me"
        );
        assert_eq!(fs::read_dir(&existing).unwrap().count(), 1);

        let message = generate("heat", parent.path(), &parent.path().join("nowhere"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("does not look like a Gorgon source checkout"),
            "{message}"
        );
        assert!(!parent.path().join("heat").exists());
    }

    /// Type names follow the function name, and avoid the names the generated code uses.
    #[test]
    fn type_names_avoid_taken_names() {
        let names = Names::new("heat-index2-b");
        assert_eq!(names.type_name, "HeatIndex2B");
        assert_eq!(names.package, "heat-index2-b-processor");
        assert_eq!(names.library, "heat_index2_b_processor");
        assert_eq!(names.test, "heat_index2_b");
        assert_eq!(Names::new("value").type_name, "ValueFunction");
        assert_eq!(Names::new("self").type_name, "SelfFunction");
        assert_eq!(Names::new("node-context").type_name, "NodeContextFunction");
        assert_eq!(Names::new("a1-2b").type_name, "A12b");
    }

    /// The manifest takes the Gorgon crates by canonical path and the others with the
    /// workspace's version requirements and features, in its own workspace.
    #[test]
    fn manifest_follows_the_workspace() {
        let gorgon = gorgon_checkout();
        let manifest: toml::Table = manifest(&Names::new("heat-index"), &gorgon)
            .unwrap()
            .parse()
            .unwrap();
        let workspace: toml::Table = fs::read_to_string(gorgon.join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
        let shared = &workspace["workspace"]["dependencies"];
        let dependencies = manifest["dependencies"].as_table().unwrap();
        assert_eq!(
            manifest["package"]["name"].as_str(),
            Some("heat-index-processor")
        );
        assert!(manifest["workspace"].as_table().unwrap().is_empty());
        for crate_name in ["anyhow", "clap", "serde_json", "tokio"] {
            let ours = &dependencies[crate_name];
            let theirs = &shared[crate_name];
            assert_eq!(
                ours.get("version").or(ours.as_str().map(|_| ours)),
                theirs.get("version").or(theirs.as_str().map(|_| theirs)),
                "{crate_name}"
            );
            assert_eq!(ours.get("features"), theirs.get("features"), "{crate_name}");
        }
        assert_eq!(
            dependencies["clap"]["features"],
            toml::Value::Array(vec!["derive".into(), "env".into()])
        );
        for (crate_name, relative) in GORGON_DEPENDENCIES {
            assert_eq!(
                dependencies[*crate_name]["path"]
                    .as_str()
                    .map(PathBuf::from),
                Some(fs::canonicalize(gorgon.join(relative)).unwrap())
            );
        }
        assert!(!manifest.contains_key("dev-dependencies"));
    }

    /// A generated crate builds offline against this checkout and its own test passes.
    #[test]
    fn generated_crate_builds_and_its_test_passes() {
        let gorgon = gorgon_checkout();
        let parent = tempfile::tempdir().unwrap();
        let dir = generate("heat-index", parent.path(), &gorgon).unwrap();
        assert_eq!(dir, parent.path().join("heat-index"));
        let mut made: Vec<String> = [
            ".gitignore",
            "Cargo.toml",
            "Procfile",
            "README.md",
            "src/lib.rs",
            "src/main.rs",
            "tests/heat_index.rs",
        ]
        .into_iter()
        .filter(|relative| dir.join(relative).is_file())
        .map(str::to_owned)
        .collect();
        made.sort();
        assert_eq!(made.len(), 7, "{made:?}");
        assert_eq!(
            fs::read_to_string(dir.join("Procfile"))
                .unwrap()
                .lines()
                .last(),
            Some(
                format!(
                    "processor: exec {}/target/release/heat-index-processor",
                    fs::canonicalize(&dir).unwrap().display()
                )
                .as_str()
            )
        );
        // The workspace's lock file makes the crate resolve as the workspace does, offline.
        fs::copy(gorgon.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = Instant::now();
        let output = Command::new(cargo)
            .args(["test", "--offline", "--quiet"])
            .current_dir(&dir)
            // The workspace's target directory: the dependencies are compiled once for both.
            .env("CARGO_TARGET_DIR", gorgon.join("target"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "cargo test failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(
            stdout.contains("test result: ok. 1 passed; 0 failed"),
            "stdout:\n{stdout}"
        );
        eprintln!(
            "the generated crate built and passed its test in {:.1?}",
            started.elapsed()
        );
    }
}
