package supervisor

import "net/http"

// statusPageHandler serves GET / and GET /status.json on the HTTP
// listener. (A stub until the status page lands: 404.)
func (s *Supervisor) statusPageHandler() http.Handler {
	return http.NotFoundHandler()
}
