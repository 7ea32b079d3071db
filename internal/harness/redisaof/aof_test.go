package redisaof

import "testing"

func TestParseAOFRejectsGarbage(t *testing.T) {
	for _, in := range []string{"hello\r\n", "*x\r\n", "*1\r\n$3\r\nGETX\r\n", "*1\r\nPING\r\n"} {
		if _, _, err := parseAOF([]byte(in)); err == nil {
			t.Errorf("parseAOF(%q) accepted it", in)
		}
	}
}

// A SIGKILL between two write(2) calls of one append leaves the file
// ending inside a command or a MULTI block: the complete units end before
// it.
func TestParseAOFIncompleteTail(t *testing.T) {
	pingCmd := "*1\r\n$4\r\nPING\r\n"
	for _, tail := range []string{"*1\r\n$5\r\nMUL", "*2\r\n$3\r\nGET\r\n", "*1\r\n$5\r\nMULTI\r\n" + pingCmd, "*3"} {
		units, complete, err := parseAOF([]byte(pingCmd + tail))
		if err != nil || len(units) != 1 || complete != int64(len(pingCmd)) {
			t.Errorf("tail %q: %d units, complete at %d, %v; want 1 unit, complete at %d", tail, len(units), complete, err, len(pingCmd))
		}
	}
}
