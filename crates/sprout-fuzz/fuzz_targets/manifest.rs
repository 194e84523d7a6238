//! `Procfile`, `sprout.yaml` and `cron.yaml` as a bundle carries them. The first byte says
//! which files are present; the rest is their text, separated by NUL bytes. A manifest that
//! parses must survive the JSON round trip it takes into the store, and its cron schedules
//! must come out with the six fields the scheduler wants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sprout_core::manifest::{BundleManifest, Procfile};

fuzz_target!(|data: &[u8]| {
    let Some((&present, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let mut file = |bit: u8| {
        let part = parts.next();
        (present & bit != 0).then(|| part.unwrap_or(""))
    };
    let (procfile, sprout_yaml, cron_yaml) = (file(1), file(2), file(4));
    if let Some(text) = procfile {
        if let Ok(p) = Procfile::parse(text) {
            for (name, command) in &p.processes {
                assert!(!name.is_empty() && !command.is_empty());
                assert!(
                    !command.contains('\n'),
                    "a command spans lines: {command:?}"
                );
            }
        }
    }
    let Ok(manifest) =
        BundleManifest::parse(procfile, sprout_yaml).and_then(|m| m.with_cron(cron_yaml))
    else {
        return;
    };
    let stored = serde_json::to_string(&manifest).expect("a manifest serializes");
    let back: BundleManifest = serde_json::from_str(&stored).expect("a stored manifest reads");
    assert_eq!(back, manifest, "the manifest changed through the store");
    for task in &manifest.cron.cron {
        let schedule = task.schedule_with_seconds();
        assert_eq!(schedule.split(' ').count(), 6, "{schedule:?}");
    }
    let _ = manifest.config.platform();
    let _ = manifest.config.health_check();
    for script in [&manifest.config.build, &manifest.config.boot]
        .into_iter()
        .flatten()
    {
        let _ = script.to_shell();
        let _ = script.is_empty();
    }
});
