//! `pullthrough preview`: the offline rewrite of manifests, as YAML, a table or a diff.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;

use crate::cli::{PreviewArgs, PreviewOutput};
use crate::preview;

/// Runs `preview`, writing to stdout.
pub fn run_preview(args: &PreviewArgs) -> anyhow::Result<()> {
    let (config, _) = args.config.load()?;
    let mut inputs = Vec::new();
    if args.files.is_empty() || args.files.iter().any(|f| f == Path::new("-")) {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read manifests from standard input")?;
        inputs.push(("-".to_owned(), text));
    }
    for file in args.files.iter().filter(|f| *f != Path::new("-")) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        inputs.push((file.display().to_string(), text));
    }
    let mut previews = Vec::new();
    for (name, text) in &inputs {
        let p = preview::preview(&config, text, name)?;
        for note in &p.notes {
            eprintln!("preview: {note}");
        }
        previews.push(p);
    }
    let out = match args.output {
        PreviewOutput::Yaml => preview::render_yaml(previews.iter().map(|p| p.text.as_str())),
        PreviewOutput::Table => preview::render_table(
            &previews
                .iter()
                .flat_map(|p| p.rows.iter().cloned())
                .collect::<Vec<_>>(),
        ),
        PreviewOutput::Diff => inputs
            .iter()
            .zip(&previews)
            .map(|((name, text), p)| preview::render_diff(name, text, &p.text))
            .collect(),
    };
    std::io::stdout()
        .write_all(out.as_bytes())
        .context("cannot write to standard output")?;
    Ok(())
}
