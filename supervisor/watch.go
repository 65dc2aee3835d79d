package supervisor

import "context"

func (s *Supervisor) watchLoop(ctx context.Context) { <-ctx.Done() }
