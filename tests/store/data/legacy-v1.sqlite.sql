-- A request log as the first release of llmops made it: store migration 1 only
-- (`schema_migrations` at 1), no evaluation tables. Dumped with `sqlite3 .dump`.
-- Do not edit: tests/store/test_migrations.py upgrades it.
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE schema_migrations (
	version INTEGER NOT NULL, 
	applied_at FLOAT NOT NULL, 
	PRIMARY KEY (version)
);
INSERT INTO schema_migrations VALUES(1,1796072741.118554592);
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
INSERT INTO request_log VALUES('v1-a',1690000000.0,'rag-qa','production','chain.rag_qa',1,NULL,NULL,NULL,0,'[{"role":"user","content":"q"}]','a','null','{"index_version":2}',NULL,'2',10.0,NULL,NULL,200,NULL);
INSERT INTO request_log VALUES('v1-b',1690000001.0,'rag-qa','production','chain.rag_qa',1,NULL,NULL,'v1-a',0,'null',NULL,'null','null',NULL,NULL,NULL,NULL,NULL,200,NULL);
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
INSERT INTO feedback VALUES('v1-a','alice',NULL,'up','fine',1796072741.1379268169,1796072741.1379268169,1);
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
INSERT INTO feedback_history VALUES(1,'v1-a','alice',NULL,'up','fine',1796072741.1379268169);
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
INSERT INTO api_keys VALUES('k1','ci','client','dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd',1796072741.1428134441,NULL);
CREATE INDEX ix_request_log_created_at ON request_log (created_at);
CREATE INDEX ix_request_log_endpoint ON request_log (endpoint);
CREATE INDEX ix_request_log_shadow_of ON request_log (shadow_of);
CREATE INDEX ix_feedback_updated_at ON feedback (updated_at);
CREATE INDEX ix_feedback_history_request_id ON feedback_history (request_id);
COMMIT;
