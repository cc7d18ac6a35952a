//! `etcdserverpb.Auth`: etcd's users, roles and permissions (the replicated state is
//! `raftgres_store::auth`), `auth enable/disable`, AuthStatus and `Authenticate`.
//!
//! Passwords are hashed here, with bcrypt at etcd's default cost, on tokio's blocking
//! pool, before the change is proposed: every replica stores the same hash and no
//! password reaches the log. A client may instead send a bcrypt hash
//! (`hashedPassword`, etcd 3.5). `Authenticate` checks the password against this
//! member's applied state after a read barrier and answers a simple token held by this
//! member (`tokens`).
//!
//! Who may call what is etcd's: user and role management, `auth enable` (once
//! enabled) and `auth disable` need root; `user get` of oneself and `role get` of a
//! role one holds need no more; Authenticate and AuthStatus are open.

use raftgres_proto::authpb::permission::Type as PermType;
use raftgres_proto::etcdserverpb::auth_server::Auth;
use raftgres_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse, AuthRoleAddRequest, AuthRoleAddResponse,
    AuthRoleDeleteRequest, AuthRoleDeleteResponse, AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse, AuthRoleRevokePermissionRequest,
    AuthRoleRevokePermissionResponse, AuthStatusRequest, AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse,
    AuthUserChangePasswordRequest, AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse, AuthUserGetRequest,
    AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse, AuthUserListRequest, AuthUserListResponse,
    AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse, ResponseHeader,
};
use raftgres_store::auth::{AuthChange, AuthError, Need};
use tonic::{Request, Response, Status};

use crate::error::{auth_status, OrStatus};
use crate::EtcdApi;

/// etcd's default `--bcrypt-cost`.
pub const BCRYPT_COST: u32 = 10;

/// The Auth service.
pub struct AuthService {
    api: EtcdApi,
}

impl AuthService {
    pub fn new(api: EtcdApi) -> Self {
        Self { api }
    }

    /// Replicates `change`; the header of the answer.
    async fn change(&self, change: AuthChange) -> Result<Option<ResponseHeader>, Status> {
        self.api.store.auth_change(change).await.or_status()?.or_status()?;
        Ok(self.api.header_now())
    }

    /// Checks the caller has `needs`, then waits until this member has applied every
    /// change acknowledged before (reads of the auth state are linearizable, as etcd's).
    async fn read_as<T>(&self, req: &Request<T>, needs: &[Need<'_>]) -> Result<(), Status> {
        self.api.authorize(req, needs)?;
        self.api.store.read_barrier().await.or_status()
    }
}

/// Runs bcrypt (tens of milliseconds by design) on the blocking pool.
async fn bcrypt_off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, bcrypt::BcryptError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(Status::invalid_argument(format!("raftgres: bcrypt: {e}"))),
        Err(e) => Err(Status::internal(format!("raftgres: bcrypt task: {e}"))),
    }
}

/// The hash a user add or password change stores: none for a `--no-password` user,
/// the client's bcrypt hash when it sent one (refused unless it is one), else the
/// bcrypt of the password.
async fn password_hash(password: String, hashed: String, no_password: bool) -> Result<Option<String>, Status> {
    if no_password {
        return Ok(None);
    }
    if !hashed.is_empty() {
        return match hashed.parse::<bcrypt::HashParts>() {
            Ok(_) => Ok(Some(hashed)),
            Err(e) => Err(Status::invalid_argument(format!("raftgres: hashedPassword is not a bcrypt hash: {e}"))),
        };
    }
    bcrypt_off_runtime(move || bcrypt::hash(password, BCRYPT_COST)).await.map(Some)
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(&self, req: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        Ok(Response::new(AuthEnableResponse { header: self.change(AuthChange::Enable).await? }))
    }

    async fn auth_disable(&self, req: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        Ok(Response::new(AuthDisableResponse { header: self.change(AuthChange::Disable).await? }))
    }

    async fn auth_status(&self, _req: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        let (enabled, auth_revision) = {
            let data = self.api.store.applied().read();
            (data.auth.enabled(), data.auth.revision())
        };
        Ok(Response::new(AuthStatusResponse { header: self.api.header_now(), enabled, auth_revision }))
    }

    async fn authenticate(&self, req: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let req = req.into_inner();
        self.api.store.read_barrier().await.or_status()?;
        let (enabled, enabled_at, hash) = {
            let data = self.api.store.applied().read();
            let hash = data.auth.user(&req.name).and_then(|u| u.password_hash.clone());
            (data.auth.enabled(), data.auth.enabled_at(), hash)
        };
        if !enabled {
            return Err(auth_status(AuthError::AuthNotEnabled));
        }
        // Unknown users and users without a password fail like a wrong password.
        let Some(hash) = hash else { return Err(auth_status(AuthError::AuthFailed)) };
        let checked = hash.clone();
        if !bcrypt_off_runtime(move || bcrypt::verify(req.password, &checked)).await? {
            return Err(auth_status(AuthError::AuthFailed));
        }
        let token = self.api.tokens.issue(&req.name, Some(hash), enabled_at, self.api.store.applied().applied_index());
        Ok(Response::new(AuthenticateResponse { header: self.api.header_now(), token }))
    }

    async fn user_add(&self, req: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        if req.name.is_empty() {
            return Err(auth_status(AuthError::UserEmpty));
        }
        let no_password = req.options.is_some_and(|o| o.no_password);
        let password_hash = password_hash(req.password, req.hashed_password, no_password).await?;
        let header = self.change(AuthChange::UserAdd { name: req.name, password_hash }).await?;
        Ok(Response::new(AuthUserAddResponse { header }))
    }

    async fn user_get(&self, req: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        self.read_as(&req, &[Need::AdminOrSelf(&req.get_ref().name)]).await?;
        let data = self.api.store.applied().read();
        let user = data.auth.user(&req.get_ref().name).ok_or_else(|| auth_status(AuthError::UserNotFound))?;
        let roles = user.roles.iter().cloned().collect();
        Ok(Response::new(AuthUserGetResponse { header: self.api.header(data.mvcc.revision()), roles }))
    }

    async fn user_list(&self, req: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        self.read_as(&req, &[Need::Admin]).await?;
        let users = self.api.store.applied().read().auth.user_names();
        Ok(Response::new(AuthUserListResponse { header: self.api.header_now(), users }))
    }

    async fn user_delete(&self, req: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let header = self.change(AuthChange::UserDelete { name: req.into_inner().name }).await?;
        Ok(Response::new(AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        let password_hash = password_hash(req.password, req.hashed_password, false).await?;
        let header = self.change(AuthChange::UserChangePassword { name: req.name, password_hash }).await?;
        Ok(Response::new(AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(&self, req: Request<AuthUserGrantRoleRequest>) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        let header = self.change(AuthChange::UserGrantRole { user: req.user, role: req.role }).await?;
        Ok(Response::new(AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(&self, req: Request<AuthUserRevokeRoleRequest>) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        let header = self.change(AuthChange::UserRevokeRole { user: req.name, role: req.role }).await?;
        Ok(Response::new(AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(&self, req: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let header = self.change(AuthChange::RoleAdd { name: req.into_inner().name }).await?;
        Ok(Response::new(AuthRoleAddResponse { header }))
    }

    async fn role_get(&self, req: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        self.read_as(&req, &[Need::AdminOrRole(&req.get_ref().role)]).await?;
        let data = self.api.store.applied().read();
        let perm = data.auth.role(&req.get_ref().role).or_status()?.to_vec();
        Ok(Response::new(AuthRoleGetResponse { header: self.api.header(data.mvcc.revision()), perm }))
    }

    async fn role_list(&self, req: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        self.read_as(&req, &[Need::Admin]).await?;
        let roles = self.api.store.applied().read().auth.role_names();
        Ok(Response::new(AuthRoleListResponse { header: self.api.header_now(), roles }))
    }

    async fn role_delete(&self, req: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let header = self.change(AuthChange::RoleDelete { name: req.into_inner().role }).await?;
        Ok(Response::new(AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        if let Some(perm) = &req.perm {
            if PermType::try_from(perm.perm_type).is_err() {
                return Err(Status::invalid_argument(format!(
                    "raftgres: unknown permission type {} (READ 0, WRITE 1, READWRITE 2)",
                    perm.perm_type
                )));
            }
        }
        let header = self.change(AuthChange::RoleGrantPermission { role: req.name, perm: req.perm }).await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        self.api.authorize(&req, &[Need::Admin])?;
        let req = req.into_inner();
        let header = self.change(AuthChange::RoleRevokePermission { role: req.role, key: req.key, range_end: req.range_end }).await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse { header }))
    }
}
