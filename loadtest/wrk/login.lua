-- POST the benchmark user's credentials (argon2id at the default cost dominates).
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"email":"bench@example.com","password":"benchmark password"}'
