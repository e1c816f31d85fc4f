-- Notifications: the channels messages go out through, the routes that decide what goes to whom,
-- the source cursors, the items waiting to be digested and the delivery queue.

-- Where messages go. Secret columns (url, signing_key, smtp_password) hold the secret itself for
-- channels made in the console; a channel from the configuration file keeps them out of the
-- database (origin 'config', read from the configuration at send time).
create table notification_channels (
    id              bigint generated always as identity primary key,
    name            text not null,
    -- webhook (generic JSON, HMAC-signed), slack, teams, email
    kind            text not null,
    -- The team this channel reaches (routes to the owning team or to the security team use it).
    team_id         bigint,
    url             text,
    signing_key     text,
    smtp_host       text,
    smtp_port       integer,
    -- starttls, tls (implicit TLS) or none
    smtp_security   text,
    smtp_username   text,
    smtp_password   text,
    mail_from       text,
    mail_to         text[] not null default '{}',
    enabled         boolean not null default true,
    -- console or config
    origin          text not null default 'console',
    created_by      text not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint notification_channels_kind_check
        check (kind in ('webhook', 'slack', 'teams', 'email')),
    constraint notification_channels_origin_check check (origin in ('console', 'config')),
    constraint notification_channels_security_check
        check (smtp_security in ('starttls', 'tls', 'none')),
    constraint notification_channels_name_check check (length(btrim(name)) > 0),
    constraint notification_channels_team_fkey foreign key (team_id) references teams (id)
        on delete set null
);
create unique index notification_channels_name_key on notification_channels (lower(name));
create index notification_channels_team_idx on notification_channels (team_id) where enabled;

-- What goes to whom. event: finding, runtime_event, incident, waiver_expiring, review_ready.
-- audience: owner (the team owning the layer of the fix), security (teams of kind security),
-- channel (the route's channel). For owner / security the route's channel, when set, is the
-- fallback for an item whose team has no channel.
create table notification_routes (
    id            bigint generated always as identity primary key,
    name          text not null,
    event         text not null,
    min_severity  text not null default 'info',
    audience      text not null,
    channel_id    bigint,
    enabled       boolean not null default true,
    origin        text not null default 'console',
    created_by    text not null,
    created_at    timestamptz not null default now(),
    constraint notification_routes_event_check
        check (event in ('finding', 'runtime_event', 'incident', 'waiver_expiring', 'review_ready')),
    constraint notification_routes_severity_check
        check (min_severity in ('info', 'low', 'medium', 'high', 'critical')),
    constraint notification_routes_audience_check check (audience in ('owner', 'security', 'channel')),
    constraint notification_routes_channel_check check (audience <> 'channel' or channel_id is not null),
    constraint notification_routes_origin_check check (origin in ('console', 'config')),
    constraint notification_routes_name_check check (length(btrim(name)) > 0),
    constraint notification_routes_channel_fkey foreign key (channel_id)
        references notification_channels (id) on delete cascade
);
create unique index notification_routes_name_key on notification_routes (lower(name));

-- How far the planner has read each source (the highest id seen). A missing row: the source was
-- never read; the planner starts it at the current maximum, so a backlog is never announced.
create table notification_cursors (
    source      text primary key,
    last_id     bigint not null,
    updated_at  timestamptz not null default now()
);

-- The queue: one message to one channel. status queued → sending → sent, or failed (will be
-- retried at next_attempt_at) → dead after the last attempt.
create table notification_deliveries (
    id               bigint generated always as identity primary key,
    channel_id       bigint not null,
    route_id         bigint,
    event            text not null,
    -- The message, independent of the channel's format: title, items (up to a few), more.
    message          jsonb not null,
    item_count       integer not null,
    status           text not null default 'queued',
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    last_error       text,
    created_at       timestamptz not null default now(),
    claimed_at       timestamptz,
    sent_at          timestamptz,
    constraint notification_deliveries_status_check
        check (status in ('queued', 'sending', 'sent', 'failed', 'dead')),
    constraint notification_deliveries_channel_fkey foreign key (channel_id)
        references notification_channels (id) on delete cascade,
    constraint notification_deliveries_route_fkey foreign key (route_id)
        references notification_routes (id) on delete set null
);
create index notification_deliveries_due_idx on notification_deliveries (next_attempt_at, id)
    where status in ('queued', 'failed');
create index notification_deliveries_dead_idx on notification_deliveries (id) where status = 'dead';
create index notification_deliveries_route_idx on notification_deliveries (route_id, channel_id, created_at);

-- What is waiting to be told: one row per (route, channel, subject), so a subject (finding 42,
-- waiver 7) is told once per route and channel however often it is re-evaluated. delivery_id is
-- set when a message carries it (or summarises it).
create table notification_items (
    id           bigint generated always as identity primary key,
    route_id     bigint not null,
    channel_id   bigint not null,
    subject      text not null,
    severity     text not null default 'info',
    item         jsonb not null,
    delivery_id  bigint,
    created_at   timestamptz not null default now(),
    constraint notification_items_subject_key unique (route_id, channel_id, subject),
    constraint notification_items_route_fkey foreign key (route_id)
        references notification_routes (id) on delete cascade,
    constraint notification_items_channel_fkey foreign key (channel_id)
        references notification_channels (id) on delete cascade,
    constraint notification_items_delivery_fkey foreign key (delivery_id)
        references notification_deliveries (id) on delete set null
);
create index notification_items_pending_idx on notification_items (route_id, channel_id, id)
    where delivery_id is null;
