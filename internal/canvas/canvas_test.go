package canvas

import "testing"

func TestParseColor(t *testing.T) {
	for in, want := range map[string]Color{"#000000": 0, "#FFFFFF": 0xFFFFFF, "#a1B2c3": 0xA1B2C3} {
		got, err := ParseColor(in)
		if err != nil || got != want {
			t.Errorf("ParseColor(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := ParseColor(got.String()); back != got {
			t.Errorf("%q does not round-trip through %q", in, got.String())
		}
	}
	for _, bad := range []string{"", "#FFF", "FFFFFF", "#GGGGGG", "#FFFFFFF", "#-FFFFF", "#+12345", " #FFFFFF"} {
		if _, err := ParseColor(bad); ErrorCode(err) != EInvalid {
			t.Errorf("ParseColor(%q): %v, want invalid", bad, err)
		}
	}
}

func TestPlacementBounds(t *testing.T) {
	size := Size{Width: 64, Height: 32}
	for _, p := range []Placement{{GX: 0, GY: 0}, {GX: 63, GY: 31}} {
		if err := p.Validate(size); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	for _, p := range []Placement{{GX: -1}, {GY: -1}, {GX: 64}, {GY: 32}} {
		if err := p.Validate(size); ErrorCode(err) != EInvalid {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := (Size{Width: 0, Height: 10}).Validate(); err == nil {
		t.Error("empty canvas accepted")
	}
}

func TestParsePosition(t *testing.T) {
	p, err := ParsePosition("abc-12_X:42")
	if err != nil || p != (Position{Epoch: "abc-12_X", Seq: 42}) || p.String() != "abc-12_X:42" {
		t.Fatalf("got %+v %v", p, err)
	}
	for _, bad := range []string{"", ":1", "e:", "e:-1", "e:x", "e f:1", "e<script>:1", "e:1.5"} {
		if _, err := ParsePosition(bad); ErrorCode(err) != EInvalid {
			t.Errorf("ParsePosition(%q) accepted", bad)
		}
	}
}

func TestErrorCodes(t *testing.T) {
	if ErrorCode(nil) != "" || ErrorCode(Errorf(EConflict, "x")) != EConflict || ErrorMessage(Errorf(EInvalid, "hi")) != "hi" {
		t.Fatal("error code mapping broken")
	}
	if ErrorMessage(errString("db password leaked")) != "internal error" {
		t.Fatal("internal error details leak to clients")
	}
}

type errString string

func (e errString) Error() string { return string(e) }
