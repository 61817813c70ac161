//! [`DbLogins`]: the user and password new Redshift connections log in with, by
//! `redshift_auth`:
//!
//! - `password`: the configured ones, always;
//! - `iam`: temporary credentials from `GetClusterCredentials[WithIAM]` or Serverless
//!   `GetCredentials`, fetched again before they expire (connections already open stay valid, as
//!   on Redshift);
//! - `secret`: the secret's `username` and `password`, read once and again when Redshift refuses
//!   them (28P01), so a rotation needs no restart.
//!
//! May import: `super` and `crate::config`.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;

use super::AwsError;
use super::api::{AwsApi, ClusterCredentialsRequest, DbCredentials};
use super::refresh::{Fetched, Refreshing};
use crate::config::{IamLogin, IamTarget, RedshiftLogin};

/// A Redshift login.
#[derive(Clone)]
pub struct DbLogin {
    /// User.
    pub user: String,
    /// Password.
    pub password: SecretString,
}

impl fmt::Debug for DbLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbLogin")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug)]
enum Source {
    Static(DbLogin),
    Iam {
        api: Arc<AwsApi>,
        login: IamLogin,
        database: String,
    },
    Secret {
        api: Arc<AwsApi>,
        arn: String,
    },
}

/// Where logins come from, and the current one.
#[derive(Debug)]
pub struct DbLogins {
    source: Source,
    cache: Refreshing<DbLogin>,
}

impl DbLogins {
    /// A fixed user and password.
    pub fn fixed(user: &str, password: SecretString) -> Self {
        Self {
            source: Source::Static(DbLogin {
                user: user.to_string(),
                password,
            }),
            cache: Refreshing::default(),
        }
    }

    /// The logins of `login` for `database`; `api` is needed unless it is a password login.
    pub fn new(
        login: &RedshiftLogin,
        database: &str,
        api: Option<Arc<AwsApi>>,
    ) -> Result<Self, AwsError> {
        let api = || api.clone().ok_or(AwsError::NoRegion);
        let source = match login {
            RedshiftLogin::Password { user, password } => {
                return Ok(Self::fixed(user, password.clone()));
            }
            RedshiftLogin::Iam(login) => Source::Iam {
                api: api()?,
                login: login.clone(),
                database: database.to_string(),
            },
            RedshiftLogin::Secret { arn } => Source::Secret {
                api: api()?,
                arn: arn.clone(),
            },
        };
        Ok(Self {
            source,
            cache: Refreshing::default(),
        })
    }

    /// Where logins come from, for messages, naming the key that chose it: `"IAM credentials of
    /// cluster x (redshift_cluster_id)"` and the like.
    pub fn describe(&self) -> String {
        match &self.source {
            Source::Static(_) => "the configured password".to_string(),
            Source::Iam { login, .. } => match &login.target {
                IamTarget::Cluster(cluster) => {
                    format!("IAM credentials of cluster {cluster} (redshift_cluster_id)")
                }
                IamTarget::Workgroup(workgroup) => {
                    format!("IAM credentials of workgroup {workgroup} (redshift_workgroup)")
                }
            },
            Source::Secret { arn, .. } => {
                format!("the login in secret {arn} (redshift_secret_arn)")
            }
        }
    }

    /// The login to open new connections with, fetched when none is held or it nears expiry.
    pub async fn current(&self) -> Result<Fetched<DbLogin>, AwsError> {
        if let Source::Static(login) = &self.source {
            return Ok(Fetched {
                value: login.clone(),
                generation: 0,
            });
        }
        self.cache.get(|| self.fetch()).await
    }

    async fn fetch(&self) -> Result<(DbLogin, Option<SystemTime>), AwsError> {
        let credentials: DbCredentials = match &self.source {
            Source::Static(login) => return Ok((login.clone(), None)),
            Source::Iam {
                api,
                login,
                database,
            } => match &login.target {
                IamTarget::Cluster(cluster) => {
                    api.cluster_credentials(&ClusterCredentialsRequest {
                        cluster,
                        db_user: login.db_user.as_deref(),
                        database,
                        duration: login.duration,
                        auto_create: login.auto_create,
                        db_groups: &login.db_groups,
                    })
                    .await?
                }
                IamTarget::Workgroup(workgroup) => {
                    api.serverless_credentials(workgroup, database, login.duration)
                        .await?
                }
            },
            Source::Secret { api, arn } => api.secret_login(arn).await?,
        };
        tracing::info!(
            user = %credentials.user,
            expires = ?credentials.expires.map(chrono::DateTime::<chrono::Utc>::from),
            source = %self.describe(),
            "fetched Redshift login"
        );
        Ok((
            DbLogin {
                user: credentials.user,
                password: credentials.password,
            },
            credentials.expires,
        ))
    }

    /// The last login fetched (for opening a connection right after [`DbLogins::current`]).
    pub fn latest(&self) -> Option<DbLogin> {
        match &self.source {
            Source::Static(login) => Some(login.clone()),
            _ => self.cache.latest(),
        }
    }

    /// Redshift refused the login of `generation`: drop it so the next [`DbLogins::current`]
    /// fetches anew. Returns whether fetching again may help (not for a fixed password, nor
    /// when a newer login is already held — then retrying with it may).
    pub fn rejected(&self, generation: u64) -> bool {
        match &self.source {
            Source::Static(_) => false,
            _ => {
                self.cache.reject(generation);
                true
            }
        }
    }
}
