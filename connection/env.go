package connection

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Bool reads the boolean variable name through getenv. It accepts true,
// yes, on, enabled and 1, and false, no, off, disabled and 0, in any case
// and with surrounding spaces; empty or unset is def. Anything else is an
// error wrapping ErrNotBool that names the variable but not the value (a
// value pasted into the wrong variable may be a secret): a typo must not
// quietly mean "off" when "off" is the insecure choice.
func Bool(getenv func(string) string, name string, def bool) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(getenv(name))) {
	case "":
		return def, nil
	case "true", "yes", "on", "enabled", "1":
		return true, nil
	case "false", "no", "off", "disabled", "0":
		return false, nil
	}
	return def, fmt.Errorf("%s: %w", name, ErrNotBool)
}

// Secret returns the variable name's value, or, when name_FILE is set,
// the contents of that file without the trailing line break (the way
// container platforms mount secrets). A file larger than 64 KiB is an
// error wrapping ErrFileTooLarge, read no further. The error names the
// variable and the file, never the contents.
func Secret(getenv func(string) string, name string) (string, error) {
	if f := getenv(name + "_FILE"); f != "" {
		b, err := readFile(name+"_FILE", f, maxSecretFile)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return getenv(name), nil
}

// ParseUserInfo splits Confluent's basic.auth.user.info format,
// "user:password", read from the variable name; the password may hold
// colons (the split is at the first). The error never shows the value.
func ParseUserInfo(name, userInfo string) (user, pass string, err error) {
	user, pass, ok := strings.Cut(userInfo, ":")
	if !ok {
		return "", "", fmt.Errorf(`%s: want "user:password"`, name)
	}
	return user, pass, nil
}

// The most read from a file a variable names: a secret (a password, a
// token, user info) is a line; a PEM bundle may hold a few hundred CAs.
// Without a bound, VAR_FILE=/dev/zero takes all the memory there is.
const (
	maxSecretFile = 64 << 10
	maxPEMFile    = 1 << 20
)

// readFile reads the file at path, which the variable name names, failing
// once it holds more than limit bytes.
func readFile(name, path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: %w: %s holds more than %d KiB", name, ErrFileTooLarge, path, limit>>10)
	}
	return b, nil
}

// setVars returns those of names whose value is not empty.
func setVars(getenv func(string) string, names ...string) []string {
	var out []string
	for _, n := range names {
		if getenv(n) != "" {
			out = append(out, n)
		}
	}
	return out
}
