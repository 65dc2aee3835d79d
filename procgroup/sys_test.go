package procgroup

import "golang.org/x/sys/unix"

func syscallKill(pid int) error           { return unix.Kill(pid, unix.SIGKILL) }
func syscallGetpgid(pid int) (int, error) { return unix.Getpgid(pid) }
