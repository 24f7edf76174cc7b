//! Environment configuration: `slot_pool`, `variable`, `connection`, `log_template` (2.3+).
//!
//! Rows whose natural key already exists (a `default_pool` made by `airflow db migrate`, a
//! variable set by hand) are left alone.

use crate::generate::copy::{Col, Kind, family, plan};
use crate::generate::tables::{Ctx, TableGen};
use crate::generate::world::World;

struct PoolRow {
    id: i64,
    pool: &'static str,
    slots: i64,
    description: &'static str,
}

family!(static PoolF, PoolRow, pool_col);

fn pool_cols() -> Vec<Col<PoolF>> {
    vec![
        pool_col("id", Kind::Int, |p, c| c.int(p.id)),
        pool_col("pool", Kind::Text, |p, c| c.text(p.pool)),
        pool_col("slots", Kind::Int, |p, c| c.int(p.slots)),
        pool_col("description", Kind::Text, |p, c| c.text(p.description)),
        pool_col("include_deferred", Kind::Bool, |_, c| c.bool(false)),
    ]
}

/// `slot_pool`: the default pool and the pools the tasks use.
pub(super) const SLOT_POOL: TableGen = TableGen {
    plan: |t, l| plan(t, l, &pool_cols()),
    produce: |_, ctx, p, enc| {
        let cols = p.select(&pool_cols());
        let pools = [
            ("default_pool", 128, "Default pool"),
            ("pool_etl", 16, "Chargements nocturnes"),
            ("pool_api", 4, "Limite de l’API partenaire — 4 appels"),
            ("pool_données", 8, "データ基盤チーム"),
        ];
        let mut id = ctx.first_id("slot_pool");
        for (pool, slots, description) in pools {
            if ctx.existing.contains(&format!("slot_pool:{pool}")) {
                continue;
            }
            enc.row(
                &cols,
                &PoolRow {
                    id,
                    pool,
                    slots,
                    description,
                },
            )?;
            id += 1;
        }
        Ok(())
    },
};

struct VariableRow {
    id: i64,
    key: &'static str,
    val: String,
    encrypted: bool,
    description: Option<&'static str>,
}

family!(static VariableF, VariableRow, variable_col);

fn variable_cols() -> Vec<Col<VariableF>> {
    vec![
        variable_col("id", Kind::Int, |v, c| c.int(v.id)),
        variable_col("key", Kind::Text, |v, c| c.text(v.key)),
        variable_col("val", Kind::Text, |v, c| c.text(&v.val)),
        variable_col("is_encrypted", Kind::Bool, |v, c| c.bool(v.encrypted)),
        variable_col("description", Kind::Text, |v, c| c.opt_text(v.description)),
    ]
}

/// The variables: (key, value, description, set before the Fernet key existed).
pub(crate) const VARIABLES: &[(&str, &str, Option<&str>, bool)] = &[
    (
        "environment",
        "production",
        Some("Where this Airflow runs"),
        true,
    ),
    (
        "seuil_alerte",
        "0.95",
        Some("Seuil d’alerte des contrôles qualité"),
        false,
    ),
    (
        "message_accueil",
        "Grüße aus Köln ✓ — 東京からこんにちは",
        None,
        false,
    ),
    (
        "warehouse_config",
        r#"{"schema": "analytique", "threads": 8, "régions": ["eu", "ap"]}"#,
        Some("JSON"),
        false,
    ),
    (
        "api_token",
        "tok_3f9a27c1e5b8d4f6",
        Some("Partner API token"),
        false,
    ),
    ("empty_value", "", None, false),
    ("batch_size", "5000", None, true),
    ("ключ_отчёта", "ежедневный", Some("Имя отчёта"), false),
];

/// `variable`: plain and, with a Fernet key, encrypted values.
pub(super) const VARIABLE: TableGen = TableGen {
    plan: |t, l| plan(t, l, &variable_cols()),
    produce: |_, ctx, p, enc| {
        let cols = p.select(&variable_cols());
        let mut id = ctx.first_id("variable");
        for &(key, val, description, before_key) in VARIABLES {
            if ctx.existing.contains(&format!("variable:{key}")) {
                continue;
            }
            let (val, encrypted) = if before_key {
                (val.to_owned(), false)
            } else {
                ctx.encrypt(val)
            };
            enc.row(
                &cols,
                &VariableRow {
                    id,
                    key,
                    val,
                    encrypted,
                    description,
                },
            )?;
            id += 1;
        }
        Ok(())
    },
};

struct ConnectionRow {
    id: i64,
    conn_id: &'static str,
    conn_type: &'static str,
    host: Option<&'static str>,
    schema: Option<&'static str>,
    login: Option<&'static str>,
    password: Option<(String, bool)>,
    port: Option<i64>,
    extra: Option<(String, bool)>,
    description: Option<&'static str>,
}

family!(static ConnectionF, ConnectionRow, connection_col);

fn connection_cols() -> Vec<Col<ConnectionF>> {
    vec![
        connection_col("id", Kind::Int, |r, c| c.int(r.id)),
        connection_col("conn_id", Kind::Text, |r, c| c.text(r.conn_id)),
        connection_col("conn_type", Kind::Text, |r, c| c.text(r.conn_type)),
        connection_col("description", Kind::Text, |r, c| c.opt_text(r.description)),
        connection_col("host", Kind::Text, |r, c| c.opt_text(r.host)),
        connection_col("schema", Kind::Text, |r, c| c.opt_text(r.schema)),
        connection_col("login", Kind::Text, |r, c| c.opt_text(r.login)),
        connection_col("password", Kind::Text, |r, c| {
            c.opt_text(r.password.as_ref().map(|p| p.0.as_str()))
        }),
        connection_col("port", Kind::Int, |r, c| c.opt_int(r.port)),
        connection_col("is_encrypted", Kind::Bool, |r, c| {
            c.bool(r.password.as_ref().is_some_and(|p| p.1))
        }),
        connection_col("is_extra_encrypted", Kind::Bool, |r, c| {
            c.bool(r.extra.as_ref().is_some_and(|e| e.1))
        }),
        connection_col("extra", Kind::Text, |r, c| {
            c.opt_text(r.extra.as_ref().map(|e| e.0.as_str()))
        }),
    ]
}

fn connections(ctx: &Ctx) -> Vec<ConnectionRow> {
    let row = |conn_id,
               conn_type,
               host,
               schema,
               login,
               password: Option<&str>,
               port,
               extra: Option<&str>,
               description| ConnectionRow {
        id: 0,
        conn_id,
        conn_type,
        host,
        schema,
        login,
        password: password.map(|p| ctx.encrypt(p)),
        port,
        extra: extra.map(|e| ctx.encrypt(e)),
        description,
    };
    vec![
        row(
            "postgres_dwh",
            "postgres",
            Some("dwh.internal"),
            Some("analytique"),
            Some("etl"),
            Some("s3cr3t-pässwörd"),
            Some(5432),
            None,
            Some("Entrepôt de données"),
        ),
        row(
            "http_partner_api",
            "http",
            Some("api.partner.example"),
            None,
            None,
            None,
            Some(443),
            Some(r#"{"timeout": 5, "headers": {"X-Équipe": "données"}}"#),
            None,
        ),
        row(
            "aws_default",
            "aws",
            None,
            None,
            None,
            None,
            None,
            Some(r#"{"region_name": "eu-west-1"}"#),
            Some("AWS"),
        ),
        row(
            "sftp_fournisseur",
            "sftp",
            Some("sftp.fournisseur.example"),
            None,
            Some("dépôt"),
            Some("mot_de_passe_é"),
            Some(22),
            None,
            None,
        ),
    ]
}

/// `connection`: a few connections, secrets encrypted when a Fernet key was given.
pub(super) const CONNECTION: TableGen = TableGen {
    plan: |t, l| plan(t, l, &connection_cols()),
    produce: |_, ctx, p, enc| {
        let cols = p.select(&connection_cols());
        let mut id = ctx.first_id("connection");
        for mut conn in connections(ctx) {
            if ctx
                .existing
                .contains(&format!("connection:{}", conn.conn_id))
            {
                continue;
            }
            conn.id = id;
            enc.row(&cols, &conn)?;
            id += 1;
        }
        Ok(())
    },
};

struct TemplateRow {
    id: i64,
    filename: &'static str,
    elasticsearch_id: &'static str,
    created_at: i64,
}

family!(static TemplateF, TemplateRow, template_col);

fn template_cols() -> Vec<Col<TemplateF>> {
    vec![
        template_col("id", Kind::Int, |t, c| c.int(t.id)),
        template_col("filename", Kind::Text, |t, c| c.text(t.filename)),
        template_col("elasticsearch_id", Kind::Text, |t, c| {
            c.text(t.elasticsearch_id)
        }),
        template_col("created_at", Kind::Time, |t, c| c.time(t.created_at)),
    ]
}

/// The two templates `airflow db migrate` inserts: the pre-2.3 one, then the current default.
pub(crate) fn log_templates(
    w: &World,
    first_id: i64,
) -> [(i64, &'static str, &'static str, i64); 2] {
    [
        (
            first_id,
            "{{ ti.dag_id }}/{{ ti.task_id }}/{{ ts }}/{{ try_number }}.log",
            "{dag_id}-{task_id}-{execution_date}-{try_number}",
            w.start,
        ),
        (
            first_id + 1,
            "dag_id={{ ti.dag_id }}/run_id={{ ti.run_id }}/task_id={{ ti.task_id }}/{% if ti.map_index >= 0 %}map_index={{ ti.map_index }}/{% endif %}attempt={{ try_number }}.log",
            "{dag_id}-{task_id}-{run_id}-{map_index}-{try_number}",
            w.start + (w.now - w.start) / 4,
        ),
    ]
}

/// `log_template`: the templates dag runs point at.
pub(super) const LOG_TEMPLATE: TableGen = TableGen {
    plan: |t, l| plan(t, l, &template_cols()),
    produce: |w, ctx, p, enc| {
        let cols = p.select(&template_cols());
        for (id, filename, elasticsearch_id, created_at) in
            log_templates(w, ctx.first_id("log_template"))
        {
            enc.row(
                &cols,
                &TemplateRow {
                    id,
                    filename,
                    elasticsearch_id,
                    created_at,
                },
            )?;
        }
        Ok(())
    },
};
