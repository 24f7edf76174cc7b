//! The schema catalog against the real thing: every DDL fixture (made by running real Airflow)
//! is loaded into PostgreSQL and compared with the catalog's description of its version.

use contrail::catalog::Catalog;
use contrail::catalog::detect::{self, Difference};

use crate::util::fixtures::{Method, ddl_fixtures};
use crate::util::pg::cluster;

/// Catalog versions with no fixture yet, and why. Every other version must have one.
const NO_FIXTURE: &[(&str, &str)] = &[];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_matches_every_real_airflow_schema() {
    let catalog = Catalog::builtin().expect("the embedded catalog loads");
    let pg = cluster();
    let mut failures = Vec::new();
    let mut covered = Vec::new();
    for fixture in ddl_fixtures() {
        let db = pg.db_from_fixture(&fixture.name);
        let client = pg.client(&db).await;
        let revisions = detect::read_revisions(&client, "public", &db)
            .await
            .expect("alembic_version");
        assert_eq!(
            revisions,
            std::slice::from_ref(&fixture.revision),
            "{}: alembic_version",
            fixture.name
        );
        let version = match detect::version_for_revisions(catalog, &revisions) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: {e}", fixture.name));
                continue;
            }
        };
        let by_name = catalog.version(&fixture.airflow).map(|v| v.id.clone());
        if by_name.as_deref() != Some(version.id.as_str()) {
            failures.push(format!(
                "{}: revision {} maps to {} but release {} maps to {by_name:?}",
                fixture.name, fixture.revision, version.id, fixture.airflow
            ));
        }
        covered.push(version.id.clone());
        let live = detect::introspect(&client, "public")
            .await
            .expect("introspection");
        for (table, difference) in detect::compare_schema(catalog, version, &live) {
            let allowed = match &difference {
                Difference::KnownDrift { .. } => fixture.method != Method::CreateAll,
                Difference::ExtraTable => fixture.method == Method::Upgraded,
                _ => false,
            };
            if !allowed {
                failures.push(format!(
                    "{} (catalog {}): {table}: {difference}",
                    fixture.name, version.id
                ));
            }
        }
    }
    for version in catalog.versions() {
        let excused = NO_FIXTURE.iter().any(|(id, _)| *id == version.id);
        if !covered.contains(&version.id) && !excused {
            failures.push(format!("catalog version {} has no DDL fixture", version.id));
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences between the catalog and real Airflow DDL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
