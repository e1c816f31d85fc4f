-- Console security: local users, their sessions, API tokens, sign-in throttling, the one-time
-- setup link and the append-only audit log. Only hashes of secrets are stored: a session cookie,
-- an API token and a setup link are kept as the sha256 of the value handed out.

create table users (
    id              bigint generated always as identity primary key,
    name            text not null,
    role            text not null,
    -- argon2id in PHC string form ($argon2id$v=19$m=…,t=…,p=…$salt$hash).
    password_hash   text not null,
    disabled        boolean not null default false,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    last_login_at   timestamptz,
    constraint users_role_check check (role in ('viewer', 'responder', 'admin')),
    constraint users_name_check check (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    constraint users_password_hash_check check (password_hash like '$argon2id$%')
);
-- Names are unique regardless of case: "Alice" and "alice" are one account.
create unique index users_name_key on users (lower(name));

create table sessions (
    -- sha256 of the cookie value; the value itself is only ever in the browser.
    id_hash         bytea not null,
    user_id         bigint not null,
    -- Sent back by every form and by the console's scripts (x-csrf-token) on each mutation.
    csrf_token      text not null,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    -- The absolute expiry; the idle expiry is last_seen_at plus the configured idle time.
    expires_at      timestamptz not null,
    client_addr     text,
    user_agent      text,
    constraint sessions_pkey primary key (id_hash),
    constraint sessions_user_fkey foreign key (user_id) references users (id) on delete cascade
);
create index sessions_user_idx on sessions (user_id);

create table api_tokens (
    id              bigint generated always as identity primary key,
    name            text not null,
    role            text not null,
    token_hash      bytea not null,
    created_by      text not null,
    created_at      timestamptz not null default now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz,
    revoked_by      text,
    constraint api_tokens_role_check check (role in ('viewer', 'responder', 'admin', 'ci')),
    constraint api_tokens_name_check check (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    constraint api_tokens_token_hash_key unique (token_hash)
);
-- One live token per name, so `harbormaster token revoke NAME` is never ambiguous; a revoked
-- token keeps its row (and its name) for the record.
create unique index api_tokens_name_key on api_tokens (lower(name)) where revoked_at is null;

-- Failed sign-ins, counted per account name (as typed, lower-cased) and per client address over
-- a sliding window. Rows older than a day are pruned as new ones arrive.
create table login_failures (
    id              bigint generated always as identity primary key,
    account         text not null,
    client_addr     text not null,
    at              timestamptz not null default now()
);
create index login_failures_account_idx on login_failures (account, at);
create index login_failures_client_addr_idx on login_failures (client_addr, at);

-- The one-time link printed at the first start with no user.
create table setup_tokens (
    token_hash      bytea not null,
    created_at      timestamptz not null default now(),
    expires_at      timestamptz not null,
    used_at         timestamptz,
    constraint setup_tokens_pkey primary key (token_hash)
);

create table audit_log (
    id              bigint generated always as identity primary key,
    at              timestamptz not null default now(),
    -- A user name, an API token name, the name tried at a failed sign-in, or `cli`.
    actor           text not null,
    actor_kind      text not null,
    action          text not null,
    target          text not null default '',
    outcome         text not null,
    client_addr     text,
    details         jsonb not null default '{}'::jsonb,
    constraint audit_log_actor_kind_check check (actor_kind in ('user', 'token', 'anonymous', 'system')),
    constraint audit_log_outcome_check check (outcome in ('success', 'failure', 'denied'))
);
create index audit_log_actor_idx on audit_log (lower(actor), id);
create index audit_log_action_idx on audit_log (action, id);

-- The audit log is append-only: no role the application connects as may change or remove a
-- row, whatever its grants.
create function audit_log_refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception 'the audit log is append-only: % is refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger audit_log_append_only
    before update or delete on audit_log
    for each row execute function audit_log_refuse_change();

create trigger audit_log_no_truncate
    before truncate on audit_log
    for each statement execute function audit_log_refuse_change();
