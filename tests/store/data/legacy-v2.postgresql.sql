-- The database of legacy-v2.sqlite.sql, made on PostgreSQL by the same code and
-- dumped with `pg_dump --inserts --no-owner --no-privileges`; the schema name, the
-- session settings and the psql meta-commands removed, so that it loads into any
-- schema on the search path.

CREATE TABLE api_keys (
    id character varying(32) NOT NULL,
    name character varying(128) NOT NULL,
    role character varying(16) NOT NULL,
    key_hash character varying(64) NOT NULL,
    created_at double precision NOT NULL,
    revoked_at double precision
);

CREATE TABLE eval_outputs (
    chain_hash character varying(64) NOT NULL,
    index_version character varying(64) NOT NULL,
    item_hash character varying(64) NOT NULL,
    output json NOT NULL,
    created_at double precision NOT NULL
);

CREATE TABLE eval_schema_migrations (
    version integer NOT NULL,
    applied_at double precision NOT NULL
);

CREATE SEQUENCE eval_schema_migrations_version_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE eval_schema_migrations_version_seq OWNED BY eval_schema_migrations.version;

CREATE TABLE eval_scores (
    output_hash character varying(64) NOT NULL,
    metric_key character varying(256) NOT NULL,
    metric character varying(64) NOT NULL,
    value double precision NOT NULL,
    created_at double precision NOT NULL
);

CREATE TABLE evaluations (
    id character varying(32) NOT NULL,
    created_at double precision NOT NULL,
    model character varying(128) NOT NULL,
    version integer NOT NULL,
    dataset character varying(256) NOT NULL,
    dataset_version character varying(32) NOT NULL,
    index_version character varying(64),
    n_items integer NOT NULL,
    failures integer NOT NULL,
    summary json NOT NULL,
    judge character varying(256),
    run_id character varying(64),
    chain_calls integer NOT NULL,
    metric_calls integer NOT NULL
);

CREATE TABLE feedback (
    request_id character varying(64) NOT NULL,
    reviewer character varying(128) NOT NULL,
    key_id character varying(32),
    rating character varying(8) NOT NULL,
    comment text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    votes integer NOT NULL
);

CREATE TABLE feedback_history (
    id integer NOT NULL,
    request_id character varying(64) NOT NULL,
    reviewer character varying(128) NOT NULL,
    key_id character varying(32),
    rating character varying(8) NOT NULL,
    comment text,
    created_at double precision NOT NULL
);

CREATE SEQUENCE feedback_history_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE feedback_history_id_seq OWNED BY feedback_history.id;

CREATE TABLE request_log (
    id character varying(64) NOT NULL,
    created_at double precision NOT NULL,
    endpoint character varying(128) NOT NULL,
    variant character varying(64),
    chain character varying(128),
    chain_version integer,
    key_id character varying(32),
    "user" character varying(256),
    shadow_of character varying(64),
    stream boolean NOT NULL,
    messages json,
    answer text,
    sources json,
    lineage json,
    prompt_version integer,
    index_version character varying(64),
    latency_ms double precision,
    prompt_tokens integer,
    completion_tokens integer,
    status integer NOT NULL,
    error text
);

CREATE TABLE schema_migrations (
    version integer NOT NULL,
    applied_at double precision NOT NULL
);

CREATE SEQUENCE schema_migrations_version_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE schema_migrations_version_seq OWNED BY schema_migrations.version;

ALTER TABLE ONLY eval_schema_migrations ALTER COLUMN version SET DEFAULT nextval('eval_schema_migrations_version_seq'::regclass);

ALTER TABLE ONLY feedback_history ALTER COLUMN id SET DEFAULT nextval('feedback_history_id_seq'::regclass);

ALTER TABLE ONLY schema_migrations ALTER COLUMN version SET DEFAULT nextval('schema_migrations_version_seq'::regclass);

INSERT INTO api_keys VALUES ('k-client', 'ci', 'client', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 1796072755.1157403, NULL);
INSERT INTO api_keys VALUES ('k-review', 'alice', 'reviewer', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 1796072755.1209972, NULL);
INSERT INTO api_keys VALUES ('k-old', 'gone', 'admin', 'cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc', 1796072755.1220398, 1796072755.123269);

INSERT INTO eval_outputs VALUES ('chainhash1', '7', 'item-a', '{"answer":"A","contexts":["c1","c2"]}', 1796072755.1580417);
INSERT INTO eval_outputs VALUES ('chainhash1', '7', 'item-b', '{"answer":"B","contexts":[]}', 1796072755.1608074);
INSERT INTO eval_outputs VALUES ('chainhash1', '12', 'item-a', '{"answer":"A2","contexts":["c1"]}', 1796072755.1625216);

INSERT INTO eval_schema_migrations VALUES (1, 1796072755.156038);

INSERT INTO eval_scores VALUES ('out-a', 'hit_rate', 'hit_rate', 1, 1796072755.1646);
INSERT INTO eval_scores VALUES ('out-a', 'semantic_similarity:all-MiniLM-L6-v2', 'semantic_similarity', 0.8125, 1796072755.1646);
INSERT INTO eval_scores VALUES ('out-b', 'hit_rate', 'hit_rate', 0, 1796072755.1646);

INSERT INTO evaluations VALUES ('ev3', 1700000100, 'chain.rag_qa', 3, 'eval/qa.jsonl', 'd1e2', '7', 2, 0, '{"hit_rate":{"mean":0.5,"n":2,"failures":0}}', NULL, 'run3', 2, 4);
INSERT INTO evaluations VALUES ('ev4', 1700000101, 'chain.rag_qa', 4, 'eval/qa.jsonl', 'd1e2', '7', 2, 1, '{"hit_rate":{"mean":0.5,"n":2,"failures":0}}', 'openai:gpt-4o-mini', 'run4', 2, 4);

INSERT INTO feedback VALUES ('req-1', 'alice', NULL, 'down', 'on second thought, vague', 1796072755.0991423, 1796072755.105604, 2);
INSERT INTO feedback VALUES ('req-1', 'bob', NULL, 'up', NULL, 1796072755.1086252, 1796072755.1086252, 1);
INSERT INTO feedback VALUES ('req-2', 'alice', NULL, 'up', NULL, 1796072755.1110363, 1796072755.1110363, 1);
INSERT INTO feedback VALUES ('req-4', 'carol', NULL, 'down', NULL, 1796072755.1132977, 1796072755.1132977, 1);

INSERT INTO feedback_history VALUES (1, 'req-1', 'alice', NULL, 'up', 'clear', 1796072755.0991423);
INSERT INTO feedback_history VALUES (2, 'req-1', 'alice', NULL, 'down', 'on second thought, vague', 1796072755.105604);
INSERT INTO feedback_history VALUES (3, 'req-1', 'bob', NULL, 'up', NULL, 1796072755.1086252);
INSERT INTO feedback_history VALUES (4, 'req-2', 'alice', NULL, 'up', NULL, 1796072755.1110363);
INSERT INTO feedback_history VALUES (5, 'req-4', 'carol', NULL, 'down', NULL, 1796072755.1132977);

INSERT INTO request_log VALUES ('req-1', 1700000000.25, 'rag-qa', 'production', 'chain.rag_qa', 3, 'k-client', 'u1', NULL, false, '[{"role":"user","content":"What does with do?"}]', 'It manages a context.', '[{"id":"kb:with#0","score":0.91}]', '{"chain":"chain.rag_qa","chain_version":3,"prompt":"prompt.qa","prompt_version":2,"index_collection":"python-docs","index_version":7,"chunk_ids":["kb:with#0"],"llm_backend":"local","base_model":"smollm2","adapter":"adapter.qa/2","prompt_tokens":40,"completion_tokens":6}', 2, '7', 120.5, 40, 6, 200, NULL);
INSERT INTO request_log VALUES ('req-2', 1700000001.5, 'rag-qa', 'staging', 'chain.rag_qa', 4, 'k-client', 'u2', NULL, true, '[{"role":"user","content":"Café au lait?"}]', 'Oui — avec du lait.', '[]', '{"prompt_version":3,"index_version":"12","chunk_ids":[]}', 3, '12', 80, 12, 5, 200, NULL);
INSERT INTO request_log VALUES ('req-3', 1700000002, 'rag-qa', 'staging', 'chain.rag_qa', 4, 'k-client', 'u3', NULL, false, '[{"role":"user","content":"slow?"}]', NULL, 'null', '{"fallback_from":"staging"}', NULL, NULL, 30000, NULL, NULL, 504, 'no answer within 30 s');
INSERT INTO request_log VALUES ('req-3-shadow', 1700000002.5, 'rag-qa', 'candidate', 'chain.rag_qa', 5, NULL, NULL, 'req-3', false, '[{"role":"user","content":"slow?"}]', 'Shadow answer.', 'null', '{"index_version":12}', NULL, '12', 45.25, NULL, NULL, 200, NULL);
INSERT INTO request_log VALUES ('req-4', 1700000003, 'chat', 'default', 'chain.chat', 1, NULL, NULL, NULL, false, '[{"role":"user","content":"hi"}]', 'hello', 'null', 'null', NULL, 'legacy-v1', NULL, NULL, NULL, 200, NULL);
INSERT INTO request_log VALUES ('req-5', 1700000004, 'chat', 'default', 'chain.chat', 1, NULL, NULL, NULL, true, '[{"role":"user","content":"stream"}]', NULL, 'null', 'null', NULL, NULL, NULL, NULL, NULL, 0, NULL);

INSERT INTO schema_migrations VALUES (1, 1796072755.0868275);
INSERT INTO schema_migrations VALUES (2, 1796072755.08948);

SELECT pg_catalog.setval('eval_schema_migrations_version_seq', 1, false);

SELECT pg_catalog.setval('feedback_history_id_seq', 5, true);

SELECT pg_catalog.setval('schema_migrations_version_seq', 1, false);

ALTER TABLE ONLY api_keys
    ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash);

ALTER TABLE ONLY api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY eval_outputs
    ADD CONSTRAINT eval_outputs_pkey PRIMARY KEY (chain_hash, index_version, item_hash);

ALTER TABLE ONLY eval_schema_migrations
    ADD CONSTRAINT eval_schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY eval_scores
    ADD CONSTRAINT eval_scores_pkey PRIMARY KEY (output_hash, metric_key);

ALTER TABLE ONLY evaluations
    ADD CONSTRAINT evaluations_pkey PRIMARY KEY (id);

ALTER TABLE ONLY feedback_history
    ADD CONSTRAINT feedback_history_pkey PRIMARY KEY (id);

ALTER TABLE ONLY feedback
    ADD CONSTRAINT feedback_pkey PRIMARY KEY (request_id, reviewer);

ALTER TABLE ONLY request_log
    ADD CONSTRAINT request_log_pkey PRIMARY KEY (id);

ALTER TABLE ONLY schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);

CREATE INDEX ix_evaluations_created_at ON evaluations USING btree (created_at);

CREATE INDEX ix_evaluations_model ON evaluations USING btree (model);

CREATE INDEX ix_feedback_history_request_id ON feedback_history USING btree (request_id);

CREATE INDEX ix_feedback_updated_at ON feedback USING btree (updated_at);

CREATE INDEX ix_request_log_created_at ON request_log USING btree (created_at);

CREATE INDEX ix_request_log_shadow_of ON request_log USING btree (shadow_of) WHERE (shadow_of IS NOT NULL);

