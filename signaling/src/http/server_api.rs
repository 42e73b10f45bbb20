//! The server API for app backends (`docs/api.md`): create and list rooms, sign users
//! in, change members' seats and roles, remove members, end rooms. Every request is
//! HMAC-signed with an API key (`auth::api_key`); the API acts with the owner's power.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chorus_proto::signal::{self, EntryPolicy, ErrorCode, Role, RoomInfo, SeatMode};
use chorus_proto::{GroupId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use super::api::ApiError;
use crate::app::AppState;
use crate::rooms::group_chat::{Actor, GroupChat};
use crate::rooms::room_info;
use crate::rooms::service::{Failure, Moderation, NewRoom, store_failure};

/// Largest signed request body.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// The `/api/v1` routes, behind signature checking.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/rooms", post(create_room).get(list_rooms))
        .route(
            "/rooms/{room}",
            get(get_room).patch(change_room).delete(end_room),
        )
        .route(
            "/rooms/{room}/members/{user}",
            put(put_member).patch(change_member).delete(remove_member),
        )
        .route("/users", post(sign_in_user))
        .layer(axum::middleware::from_fn_with_state(
            state,
            require_signature,
        ))
}

async fn require_signature(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let within = state.sessions.limits().body_timeout;
    let bytes = match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY_BYTES)).await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::FrameTooLarge,
                &format!("the body is too large (at most {MAX_BODY_BYTES} bytes)"),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Timeout,
                &format!("the body did not arrive within {} ms", within.as_millis()),
            )
            .into_response();
        }
    };
    let uri = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
    let path = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let signed = match state
        .api_key
        .verify(auth, parts.method.as_str(), path, &bytes)
    {
        Ok(signed) => signed,
        Err(e) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                &e.to_string(),
            )
            .into_response();
        }
    };
    // Each signed request is good once: its nonce is remembered (on every node of a
    // fleet) for as long as its timestamp could still be accepted.
    let memory = Duration::from_secs(chorus_proto::api_key::NONCE_MEMORY_SECS);
    match state
        .rooms
        .store()
        .first_use(&format!("{}:{}", signed.key, signed.nonce), memory)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "this signed request was already used: sign every request anew, with its own nonce",
            )
            .into_response();
        }
        Err(e) => return failure(store_failure(e)).into_response(),
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A room-service failure as an HTTP error.
fn failure((code, message): Failure) -> ApiError {
    let status = match code {
        ErrorCode::RoomNotFound | ErrorCode::NotInRoom => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::RoomFull | ErrorCode::NoFreeSeat | ErrorCode::HandleTaken => {
            StatusCode::CONFLICT
        }
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::MediaUnavailable | ErrorCode::TemporarilyUnavailable => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, code, &message)
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Malformed,
            &format!("unreadable body: {e}"),
        )
    })
}

fn parse_room(room: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(room).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::RoomNotFound,
            "there is no such room",
        )
    })
}

fn parse_user(user: &str) -> Result<UserId, ApiError> {
    UserId::parse(user).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            &format!("user id: {e}"),
        )
    })
}

/// A member as the API shows it.
#[derive(Debug, Serialize)]
struct MemberView {
    user: UserId,
    name: String,
    role: Role,
    seated: bool,
    hand_raised: bool,
    muted_by_moderator: bool,
}

/// A room as the API shows it.
#[derive(Debug, Serialize)]
struct RoomView {
    room: RoomInfo,
    group: GroupId,
    owner: UserId,
    members: Vec<MemberView>,
    /// Participants present now (on every signaling node).
    present: usize,
    /// The SFU node the room's media is on, if it has been placed.
    node: Option<String>,
}

async fn view(state: &AppState, group: &GroupChat) -> RoomView {
    let node = match state.rooms.router().bound_node(&group.room).await {
        Ok(node) => node.map(|n| n.to_string()),
        Err(_) => None,
    };
    RoomView {
        node,
        room: room_info(group),
        group: group.id.clone(),
        owner: group.owner.clone(),
        members: group
            .members
            .iter()
            .map(|m| MemberView {
                user: m.user.clone(),
                name: m.name.clone(),
                role: m.role,
                seated: m.seated,
                hand_raised: m.hand_raised,
                muted_by_moderator: m.muted_by_moderator,
            })
            .collect(),
        present: state.rooms.participants(&group.room).await.len(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRoom {
    name: String,
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    seats: Option<i64>,
    #[serde(default)]
    seat_mode: SeatMode,
    /// Who may join besides the members.
    #[serde(default)]
    entry: EntryPolicy,
    /// Display name of the owner.
    owner_name: String,
    /// An existing user to own the room; a new one when absent.
    #[serde(default)]
    owner: Option<UserId>,
}

#[derive(Debug, Serialize)]
struct Created {
    #[serde(flatten)]
    room: RoomView,
    /// The owner's user token: hand it to the owner's client for its `hello`.
    owner_token: String,
}

async fn create_room(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let body: CreateRoom = parse_json(&body)?;
    let bad = |(code, message): Failure| ApiError::new(StatusCode::BAD_REQUEST, code, &message);
    let title = signal::clean_name(&body.name).map_err(bad)?;
    let owner_name = signal::clean_name(&body.owner_name).map_err(bad)?;
    let owner = body.owner.unwrap_or_else(UserId::random);
    let settings = NewRoom {
        title,
        capacity: body.capacity,
        seats: body.seats,
        seat_mode: body.seat_mode,
        entry: body.entry,
    };
    let group = state
        .rooms
        .create_active(&owner, &owner_name, settings)
        .await
        .map_err(bad)?;
    let owner_token = state
        .user_token(&owner, &owner_name, true)
        .map_err(failure)?;
    tracing::info!(room = %group.room, "room created over the server API");
    Ok((
        StatusCode::CREATED,
        Json(Created {
            room: view(&state, &group).await,
            owner_token,
        }),
    ))
}

/// Rooms listed per page when the request does not say.
const DEFAULT_PAGE: usize = 100;
/// Most rooms listed per page.
const MAX_PAGE: usize = 1000;

/// `?limit=&after=`: a page of the rooms in id order, after the room `after`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Paging {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<RoomId>,
}

#[derive(Debug, Serialize)]
struct RoomList {
    rooms: Vec<RoomView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<RoomId>,
}

async fn list_rooms(
    State(state): State<Arc<AppState>>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> Result<Json<RoomList>, ApiError> {
    let Query(paging) = paging.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            &format!(
                "paging: {} (use ?limit=1..{MAX_PAGE}&after=<room id>)",
                e.body_text()
            ),
        )
    })?;
    let limit = paging.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            &format!("limit must be 1 to {MAX_PAGE}, not {limit}"),
        ));
    }
    let mut groups = state.rooms.all().await.map_err(failure)?;
    groups.sort_by(|a, b| a.room.cmp(&b.room));
    let start = match &paging.after {
        Some(after) => groups.partition_point(|g| &g.room <= after),
        None => 0,
    };
    let page: Vec<&GroupChat> = groups.iter().skip(start).take(limit).collect();
    let next = (start + page.len() < groups.len())
        .then(|| page.last().map(|g| g.room.clone()))
        .flatten();
    Ok(Json(RoomList {
        rooms: {
            let mut views = Vec::with_capacity(page.len());
            for g in &page {
                views.push(view(&state, g).await);
            }
            views
        },
        next,
    }))
}

async fn get_room(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<Json<RoomView>, ApiError> {
    let group = state
        .rooms
        .resolve(&parse_room(&room)?)
        .await
        .map_err(failure)?;
    Ok(Json(view(&state, &group).await))
}

async fn end_room(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
) -> Result<StatusCode, ApiError> {
    let room = parse_room(&room)?;
    state
        .rooms
        .end(&room, &Actor::Service)
        .await
        .map_err(failure)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberChange {
    #[serde(default)]
    seated: Option<bool>,
    #[serde(default)]
    muted: Option<bool>,
    #[serde(default)]
    moderator: Option<bool>,
}

async fn change_member(
    State(state): State<Arc<AppState>>,
    Path((room, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<RoomView>, ApiError> {
    let (room, user) = (parse_room(&room)?, parse_user(&user)?);
    let change: MemberChange = parse_json(&body)?;
    let actions = [
        change.moderator.map(Moderation::Moderator),
        change.seated.map(Moderation::Seat),
        change.muted.map(Moderation::Mute),
    ];
    for action in actions.into_iter().flatten() {
        state
            .rooms
            .moderate(&room, &Actor::Service, &user, action)
            .await
            .map_err(failure)?;
    }
    let group = state.rooms.resolve(&room).await.map_err(failure)?;
    Ok(Json(view(&state, &group).await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomChange {
    #[serde(default)]
    locked: Option<bool>,
    #[serde(default)]
    entry: Option<EntryPolicy>,
}

/// `PATCH /rooms/{room}`: lock or unlock the room, say who may join.
async fn change_room(
    State(state): State<Arc<AppState>>,
    Path(room): Path<String>,
    body: Bytes,
) -> Result<Json<RoomView>, ApiError> {
    let room = parse_room(&room)?;
    let change: RoomChange = parse_json(&body)?;
    let group = state
        .rooms
        .set_access(&room, &Actor::Service, change.locked, change.entry)
        .await
        .map_err(failure)?;
    Ok(Json(view(&state, &group).await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    /// Display name.
    name: String,
}

/// `PUT /rooms/{room}/members/{user}`: the backend's user is a member of the group chat.
async fn put_member(
    State(state): State<Arc<AppState>>,
    Path((room, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<RoomView>, ApiError> {
    let (room, user) = (parse_room(&room)?, parse_user(&user)?);
    let member: NewMember = parse_json(&body)?;
    let name = signal::clean_name(&member.name)
        .map_err(|(code, message)| ApiError::new(StatusCode::BAD_REQUEST, code, &message))?;
    let group = state
        .rooms
        .put_member(&room, &user, &name)
        .await
        .map_err(failure)?;
    Ok(Json(view(&state, &group).await))
}

async fn remove_member(
    State(state): State<Arc<AppState>>,
    Path((room, user)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (room, user) = (parse_room(&room)?, parse_user(&user)?);
    state
        .rooms
        .moderate(&room, &Actor::Service, &user, Moderation::Remove)
        .await
        .map_err(failure)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    name: String,
    #[serde(default)]
    user: Option<UserId>,
    /// Make the user an account with this handle (callable by it; no password).
    #[serde(default)]
    handle: Option<String>,
    /// Also mint a one-time sign-in link (needs an account: `handle`, now or before).
    #[serde(default)]
    link: bool,
}

#[derive(Debug, Serialize)]
struct SignedIn {
    user: UserId,
    user_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<chorus_proto::people::AccountInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sign_in_link: Option<SignInLink>,
}

/// A one-time sign-in link: open `path` on the signaling node's address (or pass `code`
/// to `sign_in_with_link` from your own client).
#[derive(Debug, Serialize)]
struct SignInLink {
    code: String,
    path: String,
    expires_at: u64,
}

/// How long a sign-in link works.
const SIGN_IN_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Mint a user token for one of the app's users: its client sends it in `hello`. With a
/// `handle`, the user is an account (others can call it); with `link`, a one-time link
/// signs it in on a device the backend hands the link to.
async fn sign_in_user(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<SignedIn>, ApiError> {
    let body: SignIn = parse_json(&body)?;
    let name = signal::clean_name(&body.name)
        .map_err(|(code, m)| ApiError::new(StatusCode::BAD_REQUEST, code, &m))?;
    let user = body.user.unwrap_or_else(UserId::random);
    let account = match &body.handle {
        Some(handle) => Some(
            state
                .people
                .provision(&user, &name, handle)
                .await
                .map_err(failure)?,
        ),
        None => state.people.account_of(&user).await.map_err(failure)?,
    };
    let sign_in_link = match (body.link, &account) {
        (false, _) => None,
        (true, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                "a sign-in link is for an account: give the user a handle",
            ));
        }
        (true, Some(account)) => {
            let (code, claims) = state
                .tokens
                .mint_sign_in_link(&account.user, SIGN_IN_LINK_TTL)
                .map_err(|e| {
                    failure((
                        ErrorCode::Internal,
                        format!("cannot issue a sign-in link: {e}"),
                    ))
                })?;
            Some(SignInLink {
                path: format!("/#sign_in={code}"),
                code,
                expires_at: claims.exp,
            })
        }
    };
    let user_token = state.user_token(&user, &name, true).map_err(failure)?;
    Ok(Json(SignedIn {
        user,
        user_token,
        account: account.as_ref().map(crate::people::account_info),
        sign_in_link,
    }))
}
