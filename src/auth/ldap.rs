//! Sign-in with a directory (LDAP, Active Directory) through `ldap3`: a service bind, a
//! search for the person by a configured filter (the typed login escaped per RFC 4515), a
//! bind as that entry to check the password, and the directory groups read and mapped to
//! workspace roles. StartTLS or LDAPS on rustls, trusting `ca_file` or the system's CAs.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use crate::config::LdapSettings;
use crate::domain::Role;

/// A person of the directory, as Stoa needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    pub dn: String,
    /// A stable id (`id_attribute`, e.g. entryUUID or objectGUID), or the DN without one.
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Workspace roles from the groups the person is in (`group_roles`).
    pub roles: Vec<(String, Role)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// Wrong password, no such person, a disabled one (as the filter excludes them):
    /// always the same answer.
    #[error("the directory did not accept this login and password")]
    Refused,
    #[error("the directory cannot be reached: {0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> LdapError {
    LdapError::Unavailable(e.to_string())
}

/// One group-to-role rule: members of `group` (a DN, compared without case) get `role` in
/// the workspace `workspace` (its external id, or its slug).
#[derive(Debug, Clone)]
struct GroupRole {
    group: String,
    workspace: String,
    role: Role,
}

pub struct LdapDirectory {
    settings: LdapSettings,
    tls: Option<Arc<rustls::ClientConfig>>,
    rules: Vec<GroupRole>,
}

impl LdapDirectory {
    /// `None` when `auth.ldap.url` is empty.
    pub fn new(settings: &LdapSettings) -> Result<Option<LdapDirectory>, String> {
        if settings.url.is_empty() {
            return Ok(None);
        }
        let url = url::Url::parse(&settings.url).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "ldap" | "ldaps") {
            return Err("url must be ldap:// (with starttls) or ldaps://".into());
        }
        if settings.base_dn.is_empty() || !settings.user_filter.contains("{login}") {
            return Err("base_dn is required, and user_filter must contain {login}".into());
        }
        let mut rules = Vec::new();
        for rule in &settings.group_roles {
            let (group, target) = rule.rsplit_once("->").ok_or_else(|| {
                format!("group_roles: {rule:?} is not \"<group DN> -> <workspace>:<role>\"")
            })?;
            let (workspace, role) = target.trim().rsplit_once(':').ok_or_else(|| {
                format!("group_roles: {rule:?} names no role after the workspace")
            })?;
            let role = Role::parse(role.trim()).ok_or_else(|| {
                format!("group_roles: {rule:?}: not owner, admin, editor or viewer")
            })?;
            rules.push(GroupRole {
                group: group.trim().to_lowercase(),
                workspace: workspace.trim().to_string(),
                role,
            });
        }
        let tls = if url.scheme() == "ldaps" || settings.starttls {
            Some(Arc::new(client_config(&settings.ca_file)?))
        } else {
            None
        };
        Ok(Some(LdapDirectory {
            settings: settings.clone(),
            tls,
            rules,
        }))
    }

    /// The issuer the directory's people are known under (with their id as subject).
    pub fn issuer(&self) -> String {
        format!("ldap:{}", self.settings.url)
    }

    async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut conn = LdapConnSettings::new()
            .set_conn_timeout(Duration::from_secs(self.settings.timeout_secs.max(1)))
            .set_starttls(self.settings.starttls);
        if let Some(tls) = &self.tls {
            conn = conn.set_config(tls.clone());
        }
        let (driver, ldap) = LdapConnAsync::with_settings(conn, &self.settings.url)
            .await
            .map_err(unavailable)?;
        actix_web::rt::spawn(async move {
            if let Err(e) = driver.drive().await {
                tracing::debug!(error = %e, "directory connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection bound as the service account.
    async fn service(&self) -> Result<Ldap, LdapError> {
        let mut ldap = self.connect().await?;
        ldap.simple_bind(&self.settings.bind_dn, &self.settings.bind_password)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(|e| unavailable(format!("the service bind was refused: {e}")))?;
        Ok(ldap)
    }

    async fn find(&self, ldap: &mut Ldap, filter: &str) -> Result<Vec<SearchEntry>, LdapError> {
        let attrs = [
            self.settings.id_attribute.as_str(),
            self.settings.email_attribute.as_str(),
            self.settings.name_attribute.as_str(),
        ];
        let (entries, _) = ldap
            .search(&self.settings.base_dn, Scope::Subtree, filter, attrs)
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        Ok(entries.into_iter().map(SearchEntry::construct).collect())
    }

    async fn person(
        &self,
        ldap: &mut Ldap,
        entry: SearchEntry,
    ) -> Result<DirectoryUser, LdapError> {
        let first = |name: &str| {
            entry
                .attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.first().cloned())
        };
        let id = first(&self.settings.id_attribute).unwrap_or_else(|| entry.dn.clone());
        let email = first(&self.settings.email_attribute);
        let name = first(&self.settings.name_attribute);
        let roles = self.roles_of(ldap, &entry.dn).await?;
        Ok(DirectoryUser {
            dn: entry.dn,
            id,
            email,
            name,
            roles,
        })
    }

    /// The roles the groups `dn` is a member of grant.
    async fn roles_of(&self, ldap: &mut Ldap, dn: &str) -> Result<Vec<(String, Role)>, LdapError> {
        if self.rules.is_empty() || self.settings.groups_base_dn.is_empty() {
            return Ok(Vec::new());
        }
        let filter = self.settings.group_filter.replace("{dn}", &ldap_escape(dn));
        let (entries, _) = ldap
            .search(
                &self.settings.groups_base_dn,
                Scope::Subtree,
                &filter,
                ["1.1"],
            )
            .await
            .map_err(unavailable)?
            .success()
            .map_err(unavailable)?;
        let groups: Vec<String> = entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).dn.to_lowercase())
            .collect();
        let mut roles: Vec<(String, Role)> = Vec::new();
        for rule in &self.rules {
            if !groups.contains(&rule.group) {
                continue;
            }
            // The highest role any of the person's groups grants in a workspace.
            match roles.iter_mut().find(|(w, _)| *w == rule.workspace) {
                Some((_, role)) => *role = (*role).max(rule.role),
                None => roles.push((rule.workspace.clone(), rule.role)),
            }
        }
        Ok(roles)
    }

    /// Checks a login and password against the directory.
    pub async fn sign_in(&self, login: &str, password: &str) -> Result<DirectoryUser, LdapError> {
        // An empty password is an unauthenticated bind, which directories accept as anyone.
        if password.is_empty() || login.is_empty() || login.len() > 256 {
            return Err(LdapError::Refused);
        }
        let mut ldap = self.service().await?;
        let filter = self
            .settings
            .user_filter
            .replace("{login}", &ldap_escape(login));
        let mut found = self.find(&mut ldap, &filter).await?;
        if found.len() != 1 {
            let _ = ldap.unbind().await;
            return Err(LdapError::Refused);
        }
        let entry = found.remove(0);
        let mut own = self.connect().await?;
        let bound = own
            .simple_bind(&entry.dn, password)
            .await
            .map_err(unavailable)?
            .success()
            .is_ok();
        let _ = own.unbind().await;
        if !bound {
            let _ = ldap.unbind().await;
            return Err(LdapError::Refused);
        }
        let person = self.person(&mut ldap, entry).await;
        let _ = ldap.unbind().await;
        person
    }

    /// The person with this id, as the directory has them now (`None`: gone, or excluded by
    /// the user filter, e.g. disabled).
    pub async fn lookup(&self, id: &str) -> Result<Option<DirectoryUser>, LdapError> {
        let mut ldap = self.service().await?;
        let by_id = format!("({}={})", self.settings.id_attribute, ldap_escape(id));
        let filter = format!(
            "(&{by_id}{})",
            self.settings.user_filter.replace("{login}", "*")
        );
        let mut found = self.find(&mut ldap, &filter).await?;
        let person = if found.len() == 1 {
            Some(self.person(&mut ldap, found.remove(0)).await?)
        } else {
            None
        };
        let _ = ldap.unbind().await;
        Ok(person)
    }
}

/// Trust for the directory's certificate: the PEM `ca_file`, or the system's CAs.
fn client_config(ca_file: &str) -> Result<rustls::ClientConfig, String> {
    crate::tls::client_config(ca_file)
}
