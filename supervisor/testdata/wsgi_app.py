# A tiny WSGI app for the uwsgi end-to-end test: it names its port and pid.
import os


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    body = "port %s pid %d host %s\n" % (os.environ.get("PORT"), os.getpid(), environ.get("HTTP_HOST", ""))
    return [body.encode()]
