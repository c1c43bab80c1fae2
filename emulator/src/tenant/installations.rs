//! Installing a Teams app in a scope (a user's personal scope, or a team), and the rules that
//! decide who may: the caller's permission and its reach (`…Self…` permissions reach only the
//! caller's own app), a signed-in user acting on themself (or an administrator on anyone), a
//! team member installing in their team. One set of operations serves every scope.

use super::permissions::{self, Permission};
use super::{
    Caller, CatalogApp, InstallScope, Installation, Reach, TeamsEvent, Tenant, TenantError, World,
};
use crate::ids;
use uuid::Uuid;

/// A scope as a caller names it: a user by object id or UPN, a team by group id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRef<'a> {
    User(&'a str),
    Team(&'a str),
}

/// A `…Self…` permission lets an app manage only the Teams app that is itself.
pub fn check_reach(reach: Reach, caller: &Caller, app: &CatalogApp) -> Result<(), TenantError> {
    if reach == Reach::OwnAppOnly && !app.is_managed_by(caller.app_id) {
        return Err(TenantError::NotAllowedToManageApp {
            app_id: caller.app_id.to_string(),
            teams_app: app.id.to_string(),
        });
    }
    Ok(())
}

/// What reading or writing installations needs in a scope.
fn permission(scope: ScopeRef<'_>, write: bool) -> &'static Permission {
    match (scope, write) {
        (ScopeRef::User(_), false) => &permissions::READ_USER_INSTALLATIONS,
        (ScopeRef::User(_), true) => &permissions::WRITE_USER_INSTALLATIONS,
        (ScopeRef::Team(_), false) => &permissions::READ_TEAM_INSTALLATIONS,
        (ScopeRef::Team(_), true) => &permissions::WRITE_TEAM_INSTALLATIONS,
    }
}

impl World {
    /// Installs `catalog_app` in a scope; in personal scope this creates the 1:1 chat with the
    /// app's bot (on first install: the chat outlives uninstalls).
    pub fn install_in_scope(
        &mut self,
        caller: &Caller,
        scope: ScopeRef<'_>,
        catalog_app: &str,
    ) -> Result<(Installation, Vec<TeamsEvent>), TenantError> {
        let now = self.now();
        let behaviour = self.behaviour;
        let tenant = self.emulated_tenant_mut(caller.tenant)?;
        let (scope, reach) = tenant.scope_for(caller, scope, true)?;
        let app = tenant.catalog_app(catalog_app)?.clone();
        check_reach(reach, caller, &app)?;
        if tenant.installation_in_scope(scope, app.id).is_some() {
            return Err(TenantError::AlreadyInstalled);
        }
        let first_install = tenant.ever_installed.insert((scope.scope_id(), app.id));
        let installation = Installation {
            id: ids::installation_id(&scope.scope_id().to_string(), app.id),
            scope,
            catalog_app: app.id,
            version: app.version.clone(),
            installed: now,
        };
        tenant
            .index
            .add_installation(&installation, tenant.installations.len());
        tenant.installations.push(installation.clone());
        let event = match scope {
            InstallScope::User(user) => {
                if let Some(bot) = app.bot_id {
                    tenant.ensure_chat(user, bot, now);
                }
                TeamsEvent::AppInstalledForUser {
                    tenant: tenant.id,
                    user,
                    catalog_app: app.id,
                    conversation_update: !behaviour.conversation_update_never
                        && (first_install || !behaviour.conversation_update_first_install_only),
                }
            }
            InstallScope::Team(team) => TeamsEvent::AppInstalledForTeam {
                tenant: tenant.id,
                team,
                catalog_app: app.id,
            },
        };
        Ok((installation, vec![event]))
    }

    /// The tenant, scope, installation and app of an installation the caller may change.
    fn installation_to_change(
        &mut self,
        caller: &Caller,
        scope: ScopeRef<'_>,
        installation_id: &str,
    ) -> Result<(&mut Tenant, InstallScope, Installation, CatalogApp), TenantError> {
        let tenant = self.emulated_tenant_mut(caller.tenant)?;
        let (scope, reach) = tenant.scope_for(caller, scope, true)?;
        let (installation, app) =
            tenant.managed_installation(caller, reach, scope, installation_id)?;
        Ok((tenant, scope, installation, app))
    }

    pub fn uninstall_in_scope(
        &mut self,
        caller: &Caller,
        scope: ScopeRef<'_>,
        installation_id: &str,
    ) -> Result<Vec<TeamsEvent>, TenantError> {
        let (tenant, scope, installation, app) =
            self.installation_to_change(caller, scope, installation_id)?;
        tenant
            .installations
            .retain(|i| i.id != installation.id || i.scope != installation.scope);
        tenant.index.reindex_installations(&tenant.installations);
        let tenant = tenant.id;
        Ok(vec![match scope {
            InstallScope::User(user) => TeamsEvent::AppUninstalledForUser {
                tenant,
                user,
                catalog_app: app.id,
            },
            InstallScope::Team(team) => TeamsEvent::AppUninstalledForTeam {
                tenant,
                team,
                catalog_app: app.id,
            },
        }])
    }

    /// Moves an installation to the catalog's current version; nothing happens when it has it.
    pub fn upgrade_in_scope(
        &mut self,
        caller: &Caller,
        scope: ScopeRef<'_>,
        installation_id: &str,
    ) -> Result<Vec<TeamsEvent>, TenantError> {
        let (tenant, scope, installation, app) =
            self.installation_to_change(caller, scope, installation_id)?;
        if installation.version == app.version {
            return Ok(vec![]);
        }
        if let Some(i) = tenant.index.installation(scope, installation.catalog_app) {
            tenant.installations[i].version = app.version.clone();
        }
        Ok(match scope {
            InstallScope::User(user) => vec![TeamsEvent::AppUpgradedForUser {
                tenant: tenant.id,
                user,
                catalog_app: app.id,
            }],
            // bots hear no event for a team upgrade
            InstallScope::Team(_) => vec![],
        })
    }
}

impl Tenant {
    /// The scope a caller names, once the caller may read (or write) installations there.
    pub fn scope_for(
        &self,
        caller: &Caller,
        scope: ScopeRef<'_>,
        write: bool,
    ) -> Result<(InstallScope, Reach), TenantError> {
        let reach = caller.authorize(permission(scope, write))?;
        let scope = match scope {
            ScopeRef::User(user) => {
                let user = self.user(user)?.id;
                self.check_subject(caller, user)?;
                InstallScope::User(user)
            }
            ScopeRef::Team(team) => {
                let team = self.team(team)?.id;
                if let Some(user) = caller.user {
                    self.check_team_member(team, user)?;
                }
                InstallScope::Team(team)
            }
        };
        Ok((scope, reach))
    }

    /// Installations a caller may see in a scope: with a `…Self…` permission, only its own app.
    pub fn installations_in(
        &self,
        caller: &Caller,
        scope: ScopeRef<'_>,
    ) -> Result<Vec<&Installation>, TenantError> {
        let (scope, reach) = self.scope_for(caller, scope, false)?;
        Ok(self
            .installations_in_scope(scope)
            .filter(|i| {
                reach == Reach::AnyApp
                    || self
                        .catalog
                        .iter()
                        .any(|a| a.id == i.catalog_app && a.is_managed_by(caller.app_id))
            })
            .collect())
    }

    /// One installation a caller may see in a scope.
    pub fn installation_in(
        &self,
        caller: &Caller,
        scope: ScopeRef<'_>,
        installation_id: &str,
    ) -> Result<&Installation, TenantError> {
        let (scope, reach) = self.scope_for(caller, scope, false)?;
        let installation = self.installation(scope, installation_id)?;
        check_reach(
            reach,
            caller,
            self.catalog_app(&installation.catalog_app.to_string())?,
        )?;
        Ok(installation)
    }

    pub(super) fn installation(
        &self,
        scope: InstallScope,
        id: &str,
    ) -> Result<&Installation, TenantError> {
        self.installations_in_scope(scope)
            .find(|i| i.id == id)
            .ok_or_else(|| TenantError::InstallationNotFound(id.to_string()))
    }

    /// Every installation in a scope, in catalog order (at most one an app).
    pub fn installations_in_scope(
        &self,
        scope: InstallScope,
    ) -> impl Iterator<Item = &Installation> + '_ {
        self.catalog
            .iter()
            .filter_map(move |app| self.installation_in_scope(scope, app.id))
    }

    /// An installation in `scope` and its app, if the caller's permission reaches that app.
    fn managed_installation(
        &self,
        caller: &Caller,
        reach: Reach,
        scope: InstallScope,
        installation_id: &str,
    ) -> Result<(Installation, CatalogApp), TenantError> {
        let installation = self.installation(scope, installation_id)?.clone();
        let app = self
            .catalog_app(&installation.catalog_app.to_string())?
            .clone();
        check_reach(reach, caller, &app)?;
        Ok((installation, app))
    }

    /// A signed-in user acts on themself; only an administrator acts on others.
    pub(super) fn check_subject(&self, caller: &Caller, subject: Uuid) -> Result<(), TenantError> {
        match caller.user {
            Some(me) if me != subject && !self.user_by_id(me).is_some_and(|u| u.admin) => {
                Err(TenantError::Forbidden(
                    "A user can manage apps for themself only, unless an administrator.".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    fn check_team_member(&self, team: Uuid, user: Uuid) -> Result<(), TenantError> {
        let admin = self.user_by_id(user).is_some_and(|u| u.admin);
        let member = self
            .teams
            .iter()
            .any(|t| t.id == team && t.members.iter().any(|m| m.user == user));
        if admin || member {
            Ok(())
        } else {
            Err(TenantError::Forbidden(
                "The signed-in user is not a member of the team.".into(),
            ))
        }
    }
}
