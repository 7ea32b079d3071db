package redisproc

import "testing"

func TestParseAOFRejectsGarbage(t *testing.T) {
	for _, in := range []string{"hello\r\n", "*1\r\n$5\r\nMULTI\r\n", "*1\r\n$9\r\nSHORT\r\n", "*x\r\n"} {
		if _, err := parseAOF([]byte(in)); err == nil {
			t.Errorf("parseAOF(%q) accepted it", in)
		}
	}
}
