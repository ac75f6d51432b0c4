use super::*;

struct Layout {
    _dir: tempfile::TempDir,
    tree: PathBuf,
    managed: PathBuf,
    data: PathBuf,
}

fn layout() -> Layout {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("webui");
    let managed = dir.path().join("managed");
    let data = dir.path().join("home/.local/share/sd");
    for d in [
        tree.join("extensions-builtin/Lora/scripts"),
        managed.join("ja_JP/localizations"),
        managed.join("regional/scripts"),
        managed.join(".hidden"),
        data.join("extensions/Regional/javascript"),
        data.join("extensions/mine/scripts"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(tree.join("extensions-builtin/Lora/scripts/lora.py"), "").unwrap();
    std::fs::write(managed.join("ja_JP/localizations/ja_JP.json"), "{}").unwrap();
    std::fs::write(managed.join("regional/scripts/rp.py"), "").unwrap();
    std::fs::write(
        managed.join("manifest.json"),
        r#"{"version": 1, "extensions": {"regional": {"url": "https://github.com/h/rp", "rev": "be62", "pythonPackages": []}}}"#,
    )
    .unwrap();
    std::fs::write(data.join("extensions/Regional/javascript/a.js"), "").unwrap();
    std::fs::write(data.join("extensions/mine/install.py"), "").unwrap();
    std::fs::write(data.join("extensions/mine/style.css"), "").unwrap();
    Layout {
        _dir: dir,
        tree,
        managed,
        data,
    }
}

fn scan(l: &Layout) -> Inventory {
    Inventory::scan(&Locations {
        tree: &l.tree,
        managed: Some(&l.managed),
        data: &l.data,
    })
    .unwrap()
}

fn summary(inventory: &Inventory) -> Vec<(String, Kind, bool)> {
    inventory
        .extensions
        .iter()
        .map(|e| (e.name.clone(), e.kind, e.enabled))
        .collect()
}

#[test]
fn upstream_order_and_managed_wins_over_a_user_copy_of_the_same_name() {
    let l = layout();
    let inventory = scan(&l);
    assert_eq!(
        summary(&inventory),
        vec![
            ("Lora".into(), Kind::Builtin, true),
            ("ja_JP".into(), Kind::Managed, true),
            ("regional".into(), Kind::Managed, true),
            ("Regional".into(), Kind::User, false),
            ("mine".into(), Kind::User, true),
        ]
    );
    let shadowed = &inventory.extensions[3];
    assert_eq!(shadowed.shadowed_by, Some(l.managed.join("regional")));
    let managed = inventory.find("regional").unwrap();
    assert_eq!(managed.source.as_deref(), Some("https://github.com/h/rp"));
    assert_eq!(managed.revision.as_deref(), Some("be62"));
    assert_eq!(inventory.find("ja_JP").unwrap().localizations, ["ja_JP"]);
    let mine = inventory.find("mine").unwrap();
    assert!(mine.has_installer && mine.has_style && mine.scripts == 0);
}

#[test]
fn disabled_extensions_and_disable_all() {
    let l = layout();
    std::fs::write(
        l.data.join("config.json"),
        r#"{"disabled_extensions": ["ja_JP", "mine"], "disable_all_extensions": "none"}"#,
    )
    .unwrap();
    let enabled: Vec<String> = scan(&l)
        .extensions
        .iter()
        .filter(|e| e.enabled)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(enabled, ["Lora", "regional"]);

    std::fs::write(
        l.data.join("config.json"),
        r#"{"disable_all_extensions": "extra"}"#,
    )
    .unwrap();
    let inventory = scan(&l);
    assert_eq!(inventory.disable_all, DisableAll::Extra);
    let enabled: Vec<&str> = inventory
        .extensions
        .iter()
        .filter(|e| e.enabled)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(enabled, ["Lora"]);
}

#[test]
fn bad_input_is_named() {
    let l = layout();
    std::fs::write(l.data.join("config.json"), "{not json").unwrap();
    let error = Inventory::scan(&Locations {
        tree: &l.tree,
        managed: Some(&l.managed),
        data: &l.data,
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("config.json` is not valid JSON"),
        "{error}"
    );

    std::fs::remove_file(l.data.join("config.json")).unwrap();
    std::fs::write(
        l.managed.join("manifest.json"),
        r#"{"extensions": {"x": {"sha": 1}}}"#,
    )
    .unwrap();
    let error = Inventory::scan(&Locations {
        tree: &l.tree,
        managed: Some(&l.managed),
        data: &l.data,
    })
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("not a valid managed-extensions manifest"),
        "{error}"
    );

    let missing = l.managed.join("nope");
    let error = Inventory::scan(&Locations {
        tree: &l.tree,
        managed: Some(&missing),
        data: &l.data,
    })
    .unwrap_err();
    assert!(matches!(error, ExtensionsError::ManagedMissing(_)));
}
