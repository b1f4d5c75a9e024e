-- The run store as proofloop wrote it at schema v1 (PRAGMA user_version = 1), for migration tests.
CREATE TABLE runs (
	id VARCHAR(40) NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	config JSON NOT NULL, 
	summary JSON, 
	error TEXT, 
	PRIMARY KEY (id)
);
CREATE TABLE prompts (
	sha VARCHAR(64) NOT NULL, 
	messages JSON NOT NULL, 
	PRIMARY KEY (sha)
);
CREATE TABLE call_failures (
	id INTEGER NOT NULL, 
	"key" VARCHAR(200) NOT NULL, 
	namespace VARCHAR(200) NOT NULL, 
	model VARCHAR(200), 
	tag VARCHAR(200), 
	attempt INTEGER NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	status INTEGER, 
	message TEXT NOT NULL, 
	retryable BOOLEAN, 
	retry_after FLOAT, 
	latency_s FLOAT, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_call_failures_key ON call_failures ("key");
CREATE INDEX ix_call_failures_namespace ON call_failures (namespace);
CREATE TABLE problems (
	id INTEGER NOT NULL, 
	run_id VARCHAR(40) NOT NULL, 
	text_sha VARCHAR(64) NOT NULL, 
	name VARCHAR(200), 
	text TEXT NOT NULL, 
	meta JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (run_id, text_sha), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE TABLE llm_calls (
	"key" VARCHAR(200) NOT NULL, 
	namespace VARCHAR(200) NOT NULL, 
	model VARCHAR(200) NOT NULL, 
	provider VARCHAR(40) NOT NULL, 
	sampling JSON NOT NULL, 
	prompt_sha VARCHAR(64) NOT NULL, 
	sample_index INTEGER NOT NULL, 
	text TEXT NOT NULL, 
	reasoning TEXT, 
	finish_reason VARCHAR(40), 
	sample_tokens INTEGER, 
	prompt_tokens INTEGER NOT NULL, 
	completion_tokens INTEGER NOT NULL, 
	cached_prompt_tokens INTEGER NOT NULL, 
	latency_s FLOAT, 
	tag VARCHAR(200), 
	cost_usd FLOAT, 
	attempt INTEGER NOT NULL, 
	request_size INTEGER NOT NULL, 
	created_at FLOAT NOT NULL, 
	PRIMARY KEY ("key"), 
	FOREIGN KEY(prompt_sha) REFERENCES prompts (sha)
);
CREATE INDEX ix_llm_calls_namespace ON llm_calls (namespace);
CREATE TABLE proofs (
	run_id VARCHAR(40) NOT NULL, 
	id VARCHAR(200) NOT NULL, 
	problem_id INTEGER NOT NULL, 
	raw TEXT NOT NULL, 
	reasoning TEXT, 
	solution TEXT, 
	self_evaluation TEXT, 
	self_score FLOAT, 
	status VARCHAR(40) NOT NULL, 
	cause TEXT, 
	finish_reason VARCHAR(40), 
	round INTEGER, 
	thread INTEGER, 
	attempt INTEGER, 
	meta JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (run_id, id), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE, 
	FOREIGN KEY(problem_id) REFERENCES problems (id) ON DELETE CASCADE
);
CREATE INDEX ix_proofs_problem ON proofs (run_id, problem_id);
CREATE TABLE proof_lineage (
	run_id VARCHAR(40) NOT NULL, 
	proof_id VARCHAR(200) NOT NULL, 
	parent_proof_id VARCHAR(200) NOT NULL, 
	PRIMARY KEY (run_id, proof_id, parent_proof_id), 
	FOREIGN KEY(run_id, proof_id) REFERENCES proofs (run_id, id) ON DELETE CASCADE, 
	FOREIGN KEY(run_id, parent_proof_id) REFERENCES proofs (run_id, id) ON DELETE CASCADE
);
CREATE TABLE verifications (
	run_id VARCHAR(40) NOT NULL, 
	id VARCHAR(200) NOT NULL, 
	proof_id VARCHAR(200) NOT NULL, 
	raw TEXT NOT NULL, 
	reasoning TEXT, 
	analysis TEXT, 
	score FLOAT, 
	status VARCHAR(40) NOT NULL, 
	cause TEXT, 
	issues JSON NOT NULL, 
	meta JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (run_id, id), 
	FOREIGN KEY(run_id, proof_id) REFERENCES proofs (run_id, id) ON DELETE CASCADE, 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_verifications_proof ON verifications (run_id, proof_id);
CREATE TABLE grades (
	run_id VARCHAR(40) NOT NULL, 
	id VARCHAR(200) NOT NULL, 
	proof_id VARCHAR(200) NOT NULL, 
	grader VARCHAR(40) NOT NULL, 
	raw TEXT, 
	grade FLOAT, 
	max_grade FLOAT NOT NULL, 
	normalised FLOAT, 
	status VARCHAR(40) NOT NULL, 
	cause TEXT, 
	meta JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (run_id, id), 
	FOREIGN KEY(run_id, proof_id) REFERENCES proofs (run_id, id) ON DELETE CASCADE, 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_grades_proof ON grades (run_id, proof_id);
CREATE TABLE proof_refined_from_analyses (
	run_id VARCHAR(40) NOT NULL, 
	proof_id VARCHAR(200) NOT NULL, 
	verification_id VARCHAR(200) NOT NULL, 
	PRIMARY KEY (run_id, proof_id, verification_id), 
	FOREIGN KEY(run_id, proof_id) REFERENCES proofs (run_id, id) ON DELETE CASCADE, 
	FOREIGN KEY(run_id, verification_id) REFERENCES verifications (run_id, id) ON DELETE CASCADE
);
CREATE TABLE meta_verifications (
	run_id VARCHAR(40) NOT NULL, 
	id VARCHAR(200) NOT NULL, 
	verification_id VARCHAR(200) NOT NULL, 
	raw TEXT NOT NULL, 
	reasoning TEXT, 
	analysis TEXT, 
	rating FLOAT, 
	status VARCHAR(40) NOT NULL, 
	cause TEXT, 
	meta JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (run_id, id), 
	FOREIGN KEY(run_id, verification_id) REFERENCES verifications (run_id, id) ON DELETE CASCADE, 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
CREATE INDEX ix_meta_verifications_verification ON meta_verifications (run_id, verification_id);
