# A WSGI app for the forwarded-headers test: it answers with its environ's
# string values, one KEY=VALUE a line, sorted.


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    lines = ["%s=%s" % (k, v) for k, v in sorted(environ.items()) if isinstance(v, str)]
    return [("\n".join(lines) + "\n").encode()]
