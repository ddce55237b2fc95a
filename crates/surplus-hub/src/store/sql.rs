//! The plumbing every statement shares: parameters bound in order, each converted to what the
//! schema keeps ([`Param`], through [`sql!`]), and transactions that commit when their work
//! succeeds ([`Store::transaction`]).

use sqlx::{Any, AnyConnection, Encode, Type};
use uuid::Uuid;

use super::{Result, Store, to_i64};

/// A value as a statement's parameter, in the form the schema keeps it: ids as TEXT, sizes and
/// counts as BIGINT, text as it is.
pub trait Param<'q> {
    type Value: Encode<'q, Any> + Type<Any> + Send + 'q;
    fn param(self) -> Self::Value;
}

/// Implements [`Param`] for types sqlx binds as they are.
macro_rules! as_is {
    ($($type:ty),*) => {
        $(impl<'q> Param<'q> for $type {
            type Value = $type;
            fn param(self) -> Self::Value {
                self
            }
        })*
    };
}

as_is!(
    i64,
    Option<i64>,
    String,
    Option<String>,
    &'q str,
    Option<&'q str>
);

impl<'q> Param<'q> for &'q String {
    type Value = &'q str;
    fn param(self) -> Self::Value {
        self
    }
}

impl<'q> Param<'q> for Uuid {
    type Value = String;
    fn param(self) -> Self::Value {
        self.to_string()
    }
}

impl<'q> Param<'q> for &Uuid {
    type Value = String;
    fn param(self) -> Self::Value {
        self.to_string()
    }
}

impl<'q> Param<'q> for Option<Uuid> {
    type Value = Option<String>;
    fn param(self) -> Self::Value {
        self.map(|id| id.to_string())
    }
}

/// Sizes are u64 in Rust and BIGINT in SQL (see [`to_i64`]).
impl<'q> Param<'q> for u64 {
    type Value = i64;
    fn param(self) -> Self::Value {
        to_i64(self)
    }
}

impl<'q> Param<'q> for u32 {
    type Value = i64;
    fn param(self) -> Self::Value {
        i64::from(self)
    }
}

/// A statement with its parameters (`$1`, `$2`, ... in order), each bound through [`Param`]:
/// `sql!("UPDATE devices SET revoked_at = $1 WHERE id = $2", now, device_id)`.
macro_rules! sql {
    ($statement:expr $(, $param:expr)* $(,)?) => {
        sqlx::query($statement)$(.bind($crate::store::sql::Param::param($param)))*
    };
}
pub(crate) use sql;

impl Store {
    /// Runs `work` in one transaction, committed when it returns `Ok`; an error (or a panic)
    /// rolls everything back. Work that finds nothing to do may return `Ok` early: committing
    /// no writes changes nothing.
    pub(super) async fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&mut AnyConnection) -> Result<T>,
    ) -> Result<T> {
        let mut tx = self.pool.begin().await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }
}
