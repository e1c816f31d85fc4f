//! What the benchmarks share.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// A fresh, migrated database `name` next to the one DATABASE_URL names (dropped first if a
/// previous run left it).
pub async fn fresh_database(name: &str, max_connections: u32) -> PgPool {
    let url = std::env::var("DATABASE_URL").expect(
        "set DATABASE_URL to a PostgreSQL server (scripts/test-db.sh start DIR prints one)",
    );
    let (base, _) = url.rsplit_once('/').expect("a database URL");
    let mut admin = PgConnection::connect(&url)
        .await
        .expect("the database answers");
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .connect(&format!("{base}/{name}"))
        .await
        .unwrap();
    harbormaster::db::MIGRATOR.run(&pool).await.unwrap();
    pool
}
