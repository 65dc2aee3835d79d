package supervisor

import "net/http"

// metricsHandler serves GET /metrics on the HTTP listener. (A stub until
// the metrics land: 404.)
func (s *Supervisor) metricsHandler() http.Handler {
	return http.NotFoundHandler()
}
