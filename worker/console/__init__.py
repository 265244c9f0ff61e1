"""The web console (`erpsync console`): tenants, jobs and their documents, search and dead letters for people who
run erpsync, with the few actions they need (pause, resume, reauthorize, replay, drop). Server-rendered pages
(app.py, templates/), a small script that polls the JSON endpoints (static/), accounts and CSRF (auth.py), and
the data joined from worker/ops, worker/store and the archive (data.py)."""
