//! Lookups that stay fast in a tenant of 100,000 users: users by id, UPN, key and `29:` id,
//! chats by either of their ids, installations by scope and app. The index is the tenant's own
//! (its collections are private), so it changes exactly when they do.

use super::{Chat, InstallScope, Installation, User};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Clone, Debug, Default)]
pub(super) struct Index {
    user_ids: HashMap<Uuid, usize>,
    /// Lower-cased: Graph matches UPNs, and scenarios keys, case-insensitively.
    user_upns: HashMap<String, usize>,
    user_keys: HashMap<String, usize>,
    user_mris: HashMap<String, usize>,
    /// Both a chat's Graph id and its Connector id.
    chats: HashMap<String, usize>,
    installations: HashMap<(InstallScope, Uuid), usize>,
}

impl Index {
    pub(super) fn of_users(users: &[User]) -> Self {
        let mut index = Self::default();
        for (i, u) in users.iter().enumerate() {
            // the first of two users with the same name wins, as a scan would find it
            index.user_ids.entry(u.id).or_insert(i);
            index
                .user_upns
                .entry(u.user_principal_name.to_ascii_lowercase())
                .or_insert(i);
            index
                .user_keys
                .entry(u.key.to_ascii_lowercase())
                .or_insert(i);
            index.user_mris.entry(u.mri.clone()).or_insert(i);
        }
        index
    }

    pub(super) fn user_by_id(&self, id: Uuid) -> Option<usize> {
        self.user_ids.get(&id).copied()
    }

    pub(super) fn user_by_upn(&self, upn: &str) -> Option<usize> {
        self.user_upns.get(&upn.to_ascii_lowercase()).copied()
    }

    pub(super) fn user_by_key(&self, key: &str) -> Option<usize> {
        self.user_keys.get(&key.to_ascii_lowercase()).copied()
    }

    pub(super) fn user_by_mri(&self, mri: &str) -> Option<usize> {
        self.user_mris.get(mri).copied()
    }

    pub(super) fn chat(&self, id: &str) -> Option<usize> {
        self.chats.get(id).copied()
    }

    pub(super) fn add_chat(&mut self, chat: &Chat, at: usize) {
        self.chats.insert(chat.id.clone(), at);
        self.chats.insert(chat.conversation_id.clone(), at);
    }

    pub(super) fn installation(&self, scope: InstallScope, app: Uuid) -> Option<usize> {
        self.installations.get(&(scope, app)).copied()
    }

    pub(super) fn add_installation(&mut self, installation: &Installation, at: usize) {
        self.installations
            .insert((installation.scope, installation.catalog_app), at);
    }

    /// After installations were removed (rare: an uninstall), their places moved.
    pub(super) fn reindex_installations(&mut self, installations: &[Installation]) {
        self.installations = installations
            .iter()
            .enumerate()
            .map(|(i, x)| ((x.scope, x.catalog_app), i))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Tenant, User};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn user(n: u128, key: &str) -> User {
        User {
            id: Uuid::from_u128(n),
            key: key.to_string(),
            user_principal_name: format!("{key}@contoso.onmicrosoft.com"),
            display_name: key.to_string(),
            given_name: key.to_string(),
            surname: String::new(),
            mail: String::new(),
            job_title: None,
            password: String::new(),
            admin: false,
            mri: format!("29:{n}"),
            blocked_bots: Default::default(),
        }
    }

    proptest! {
        /// The index finds whom a scan of the directory would, whatever the case of the name.
        #[test]
        fn lookups_agree_with_a_scan(
            keys in proptest::collection::vec("[a-c]{1,3}", 1..12),
            probe in "[a-cA-C]{1,3}",
        ) {
            let users: Vec<User> = keys.iter().enumerate().map(|(i, k)| user(i as u128 + 1, k)).collect();
            let tenant = Tenant::new(Uuid::nil(), "T".into(), "t".into(), users.clone(), vec![], vec![], vec![]);
            let scan_key = users.iter().find(|u| u.key.eq_ignore_ascii_case(&probe));
            let upn = format!("{probe}@CONTOSO.onmicrosoft.com");
            let scan_upn = users.iter().find(|u| u.user_principal_name.eq_ignore_ascii_case(&upn));
            prop_assert_eq!(tenant.user_by_handle(&probe).ok().map(|u| u.id), scan_key.map(|u| u.id));
            prop_assert_eq!(tenant.user(&upn).ok().map(|u| u.id), scan_upn.map(|u| u.id));
            for u in &users {
                prop_assert_eq!(tenant.user_by_id(u.id).map(|x| x.id), Some(u.id));
                prop_assert_eq!(tenant.user_by_mri(&u.mri).map(|x| x.id), Some(u.id));
                prop_assert_eq!(tenant.user(&u.id.to_string()).ok().map(|x| x.id), Some(u.id));
            }
        }
    }
}
