-- POST a new document; the access token comes from the TOKEN environment variable.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = '{"title":"created under load","content":"some text"}'
