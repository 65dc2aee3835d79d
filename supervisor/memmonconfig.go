package supervisor

import (
	"errors"
	"fmt"

	"github.com/BurntSushi/toml"
	"github.com/gosup/gosup/memmon"
)

// checkMemmon decodes [memmon] and [email] over their defaults, lets the
// memmon package validate them, and checks that the processes and groups
// they name exist.
func checkMemmon(cfg *Config, md toml.MetaData, raw rawConfig, file string, lines lineIndex) []error {
	var errs []error
	wrap := func(err error) {
		for _, e := range unjoin(err) {
			var ke *memmon.KeyError
			if errors.As(e, &ke) {
				errs = append(errs, &ConfigError{File: file, Line: lines.find(ke.Key), Key: ke.Key, Msg: ke.Err.Error()})
			} else {
				errs = append(errs, decodeError(file, "", e))
			}
		}
	}
	if md.IsDefined("memmon") {
		s := memmon.DefaultSettings()
		if err := md.PrimitiveDecode(raw.Memmon, &s); err != nil {
			wrap(err)
		} else if err := s.Validate(); err != nil {
			wrap(err)
		} else {
			cfg.Memmon = &s
		}
	}
	if md.IsDefined("email") {
		e := memmon.DefaultEmail()
		if err := md.PrimitiveDecode(raw.Email, &e); err != nil {
			wrap(err)
		} else if err := e.Validate(); err != nil {
			wrap(err)
		} else {
			cfg.Email = &e
		}
	}
	if cfg.Memmon == nil {
		return errs
	}
	procs, groups := map[string]bool{}, map[string]bool{}
	for _, p := range cfg.Programs {
		groups[p.Name] = true
		for _, ps := range p.Procs {
			groups[ps.Group] = true
			procs[ps.Name] = true
			procs[ps.FullName()] = true
		}
	}
	for name := range cfg.Memmon.Program {
		if !procs[name] {
			key := "memmon.program." + name
			errs = append(errs, &ConfigError{File: file, Line: lines.find("memmon.program"), Key: key, Msg: fmt.Sprintf("no process is named %q (use a process name such as web_00, or group:name)", name)})
		}
	}
	for name := range cfg.Memmon.Group {
		if !groups[name] {
			errs = append(errs, &ConfigError{File: file, Line: lines.find("memmon.group"), Key: "memmon.group." + name, Msg: fmt.Sprintf("no program is named %q", name)})
		}
	}
	return errs
}
