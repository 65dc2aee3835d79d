package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/gosup/gosup/supervisor/api"
	"github.com/gosup/gosup/supervisor/config"
)

// defaultConfigs are tried in order when -c is not given.
var defaultConfigs = []string{"gosup.toml", "/etc/gosup/gosup.toml"}

// configPath returns the -c file, or the first default that exists.
func (g *globalFlags) configPath() (string, error) {
	if g.config != "" {
		return g.config, nil
	}
	for _, p := range defaultConfigs {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", usage(fmt.Errorf("no configuration file: give -c FILE (looked for %v)", defaultConfigs))
}

// loadConfig loads the configuration; a bad one is a usage error (exit 2).
func (g *globalFlags) loadConfig() (*config.Config, error) {
	path, err := g.configPath()
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadWith(path, config.LoadOptions{InsecureFiles: g.insecure})
	if err != nil {
		return nil, usage(err)
	}
	return cfg, nil
}

// socketPath finds the daemon: --socket, then the socket named in -c FILE,
// then $GOSUP_SOCKET, then a default config file, then the default socket.
func (g *globalFlags) socketPath() (string, error) {
	if g.socket != "" {
		return g.socket, nil
	}
	if g.config != "" {
		return socketOf(g.config)
	}
	if s := os.Getenv("GOSUP_SOCKET"); s != "" {
		return s, nil
	}
	for _, p := range defaultConfigs {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return socketOf(p)
	}
	return config.DefaultSocket(), nil
}

// socketOf reads only the socket from a config file, so that a client
// reaches the daemon while the file has mistakes elsewhere.
func socketOf(path string) (string, error) {
	s, err := config.SocketOf(path)
	if err != nil {
		return "", usage(err)
	}
	return s, nil
}

func (g *globalFlags) client() (*api.Client, error) {
	s, err := g.socketPath()
	if err != nil {
		return nil, err
	}
	return api.NewClient(s), nil
}
