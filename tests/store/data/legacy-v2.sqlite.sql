-- A request log as llmops made it before Alembic: store migrations 1 and 2
-- (`schema_migrations`), evaluation migration 1 (`eval_schema_migrations`), rows in
-- every table. Made by that release's llmops/store.py and llmops/eval/results.py,
-- dumped with `sqlite3 legacy.db .dump`. Do not edit: tests/store/test_migrations.py
-- upgrades it.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_migrations (
	version INTEGER NOT NULL, 
	applied_at FLOAT NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO schema_migrations VALUES(1,1796072729.1406197547);
INSERT INTO schema_migrations VALUES(2,1796072729.1434473991);
CREATE TABLE request_log (
	id VARCHAR(64) NOT NULL, 
	created_at FLOAT NOT NULL, 
	endpoint VARCHAR(128) NOT NULL, 
	variant VARCHAR(64), 
	chain VARCHAR(128), 
	chain_version INTEGER, 
	key_id VARCHAR(32), 
	user VARCHAR(256), 
	shadow_of VARCHAR(64), 
	stream BOOLEAN NOT NULL, 
	messages JSON, 
	answer TEXT, 
	sources JSON, 
	lineage JSON, 
	prompt_version INTEGER, 
	index_version VARCHAR(64), 
	latency_ms FLOAT, 
	prompt_tokens INTEGER, 
	completion_tokens INTEGER, 
	status INTEGER NOT NULL, 
	error TEXT, 
	PRIMARY KEY (id)
);
INSERT INTO request_log VALUES('req-1',1700000000.25,'rag-qa','production','chain.rag_qa',3,'k-client','u1',NULL,0,'[{"role":"user","content":"What does with do?"}]','It manages a context.','[{"id":"kb:with#0","score":0.91}]','{"chain":"chain.rag_qa","chain_version":3,"prompt":"prompt.qa","prompt_version":2,"index_collection":"python-docs","index_version":7,"chunk_ids":["kb:with#0"],"llm_backend":"local","base_model":"smollm2","adapter":"adapter.qa/2","prompt_tokens":40,"completion_tokens":6}',2,'7',120.5,40,6,200,NULL);
INSERT INTO request_log VALUES('req-2',1700000001.4999999999,'rag-qa','staging','chain.rag_qa',4,'k-client','u2',NULL,1,'[{"role":"user","content":"Café au lait?"}]','Oui — avec du lait.','[]','{"prompt_version":3,"index_version":"12","chunk_ids":[]}',3,'12',80.0,12,5,200,NULL);
INSERT INTO request_log VALUES('req-3',1700000002.0,'rag-qa','staging','chain.rag_qa',4,'k-client','u3',NULL,0,'[{"role":"user","content":"slow?"}]',NULL,'null','{"fallback_from":"staging"}',NULL,NULL,30000.0,NULL,NULL,504,'no answer within 30 s');
INSERT INTO request_log VALUES('req-3-shadow',1700000002.5,'rag-qa','candidate','chain.rag_qa',5,NULL,NULL,'req-3',0,'[{"role":"user","content":"slow?"}]','Shadow answer.','null','{"index_version":12}',NULL,'12',45.25,NULL,NULL,200,NULL);
INSERT INTO request_log VALUES('req-4',1700000003.0,'chat','default','chain.chat',1,NULL,NULL,NULL,0,'[{"role":"user","content":"hi"}]','hello','null','null',NULL,'legacy-v1',NULL,NULL,NULL,200,NULL);
INSERT INTO request_log VALUES('req-5',1700000004.0,'chat','default','chain.chat',1,NULL,NULL,NULL,1,'[{"role":"user","content":"stream"}]',NULL,'null','null',NULL,NULL,NULL,NULL,NULL,0,NULL);
CREATE TABLE feedback (
	request_id VARCHAR(64) NOT NULL, 
	reviewer VARCHAR(128) NOT NULL, 
	key_id VARCHAR(32), 
	rating VARCHAR(8) NOT NULL, 
	comment TEXT, 
	created_at FLOAT NOT NULL, 
	updated_at FLOAT NOT NULL, 
	votes INTEGER NOT NULL, 
	PRIMARY KEY (request_id, reviewer)
);
INSERT INTO feedback VALUES('req-1','alice',NULL,'down','on second thought, vague',1796072729.1555876731,1796072729.1642355919,2);
INSERT INTO feedback VALUES('req-1','bob',NULL,'up',NULL,1796072729.1670253277,1796072729.1670253277,1);
INSERT INTO feedback VALUES('req-2','alice',NULL,'up',NULL,1796072729.1707615851,1796072729.1707615851,1);
INSERT INTO feedback VALUES('req-4','carol',NULL,'down',NULL,1796072729.1717667579,1796072729.1717667579,1);
CREATE TABLE feedback_history (
	id INTEGER NOT NULL, 
	request_id VARCHAR(64) NOT NULL, 
	reviewer VARCHAR(128) NOT NULL, 
	key_id VARCHAR(32), 
	rating VARCHAR(8) NOT NULL, 
	comment TEXT, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO feedback_history VALUES(1,'req-1','alice',NULL,'up','clear',1796072729.1555876731);
INSERT INTO feedback_history VALUES(2,'req-1','alice',NULL,'down','on second thought, vague',1796072729.1642355919);
INSERT INTO feedback_history VALUES(3,'req-1','bob',NULL,'up',NULL,1796072729.1670253277);
INSERT INTO feedback_history VALUES(4,'req-2','alice',NULL,'up',NULL,1796072729.1707615851);
INSERT INTO feedback_history VALUES(5,'req-4','carol',NULL,'down',NULL,1796072729.1717667579);
CREATE TABLE api_keys (
	id VARCHAR(32) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	key_hash VARCHAR(64) NOT NULL, 
	created_at FLOAT NOT NULL, 
	revoked_at FLOAT, 
	PRIMARY KEY (id), 
	UNIQUE (key_hash)
);
INSERT INTO api_keys VALUES('k-client','ci','client','aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',1796072729.1726305485,NULL);
INSERT INTO api_keys VALUES('k-review','alice','reviewer','bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb',1796072729.1745698452,NULL);
INSERT INTO api_keys VALUES('k-old','gone','admin','cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc',1796072729.1749432086,1796072729.1754603386);
CREATE TABLE eval_schema_migrations (
	version INTEGER NOT NULL, 
	applied_at FLOAT NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO eval_schema_migrations VALUES(1,1796072729.194896698);
CREATE TABLE eval_outputs (
	chain_hash VARCHAR(64) NOT NULL, 
	index_version VARCHAR(64) NOT NULL, 
	item_hash VARCHAR(64) NOT NULL, 
	output JSON NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (chain_hash, index_version, item_hash)
);
INSERT INTO eval_outputs VALUES('chainhash1','7','item-a','{"answer":"A","contexts":["c1","c2"]}',1796072729.2055869101);
INSERT INTO eval_outputs VALUES('chainhash1','7','item-b','{"answer":"B","contexts":[]}',1796072729.2067434787);
INSERT INTO eval_outputs VALUES('chainhash1','12','item-a','{"answer":"A2","contexts":["c1"]}',1796072729.2072188853);
CREATE TABLE eval_scores (
	output_hash VARCHAR(64) NOT NULL, 
	metric_key VARCHAR(256) NOT NULL, 
	metric VARCHAR(64) NOT NULL, 
	value FLOAT NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (output_hash, metric_key)
);
INSERT INTO eval_scores VALUES('out-a','hit_rate','hit_rate',1.0,1796072729.2076184749);
INSERT INTO eval_scores VALUES('out-a','semantic_similarity:all-MiniLM-L6-v2','semantic_similarity',0.8125,1796072729.2076184749);
INSERT INTO eval_scores VALUES('out-b','hit_rate','hit_rate',0.0,1796072729.2076184749);
CREATE TABLE evaluations (
	id VARCHAR(32) NOT NULL, 
	created_at FLOAT NOT NULL, 
	model VARCHAR(128) NOT NULL, 
	version INTEGER NOT NULL, 
	dataset VARCHAR(256) NOT NULL, 
	dataset_version VARCHAR(32) NOT NULL, 
	index_version VARCHAR(64), 
	n_items INTEGER NOT NULL, 
	failures INTEGER NOT NULL, 
	summary JSON NOT NULL, 
	judge VARCHAR(256), 
	run_id VARCHAR(64), 
	chain_calls INTEGER NOT NULL, 
	metric_calls INTEGER NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO evaluations VALUES('ev3',1700000100.0,'chain.rag_qa',3,'eval/qa.jsonl','d1e2','7',2,0,'{"hit_rate":{"mean":0.5,"n":2,"failures":0}}',NULL,'run3',2,4);
INSERT INTO evaluations VALUES('ev4',1700000101.0,'chain.rag_qa',4,'eval/qa.jsonl','d1e2','7',2,1,'{"hit_rate":{"mean":0.5,"n":2,"failures":0}}','openai:gpt-4o-mini','run4',2,4);
CREATE INDEX ix_request_log_created_at ON request_log (created_at);
CREATE INDEX ix_feedback_updated_at ON feedback (updated_at);
CREATE INDEX ix_feedback_history_request_id ON feedback_history (request_id);
CREATE INDEX ix_request_log_shadow_of ON request_log (shadow_of) WHERE shadow_of IS NOT NULL;
CREATE INDEX ix_evaluations_created_at ON evaluations (created_at);
CREATE INDEX ix_evaluations_model ON evaluations (model);
COMMIT;
