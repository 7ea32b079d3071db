package gateway_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// binHeader asks for the binary subprotocol.
func binHeader() http.Header {
	return http.Header{"Sec-Websocket-Protocol": {protocol.SubprotocolBinary}}
}

// readBinFrame reads one binary message and decodes it.
func readBinFrame(t testing.TB, ws *websocket.Conn) protocol.ServerFrame {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	mt, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if mt != websocket.BinaryMessage {
		t.Fatalf("frame type %d (%s), want binary", mt, data)
	}
	f, err := protocol.DecodeBinary(data)
	if err != nil {
		t.Fatalf("frame %x: %v", data, err)
	}
	return f
}

// A client that asks for pixelflow.v1.bin gets it (also among other
// offers), and every frame in it: hello, the replay of its gap, live
// events with the published pixels, and a pong to its one-byte ping.
func TestBinaryConnection(t *testing.T) {
	f := newProto(t, 5, nil)
	hdr := http.Header{"Sec-Websocket-Protocol": {"x-unknown, " + protocol.SubprotocolBinary}}
	ws, _, err := rawDial(t, f.gw.URL, "?since=e1:2", hdr)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Subprotocol() != protocol.SubprotocolBinary {
		t.Fatalf("negotiated %q, want %s", ws.Subprotocol(), protocol.SubprotocolBinary)
	}
	if h := readBinFrame(t, ws); h.Type != protocol.TypeHello || h.Epoch != "e1" || h.Seq != 5 || !h.Resumed {
		t.Fatalf("first frame %+v, want a resumed hello at e1:5", h)
	}
	f.pub.Publish(3)
	pixels := f.pub.Pixels()
	var seqs []uint64
	for len(seqs) == 0 || seqs[len(seqs)-1] < 8 {
		fr := readBinFrame(t, ws)
		if fr.Type != protocol.TypeEvents {
			t.Fatalf("got %+v, want events", fr)
		}
		for _, e := range fr.Events {
			seqs = append(seqs, e.Seq)
			if e.ID != "" || !e.CommittedAt.IsZero() {
				t.Errorf("binary event %+v carries optional fields", e)
			}
			if e.Kind == protocol.KindCanary {
				continue
			}
			// The publisher's canvas holds each pixel's newest version:
			// an event is at or below it, in its colour when it is it.
			p, ok := pixels[[2]int{e.GX, e.GY}]
			if !ok || e.Version > p.Version || e.Version == p.Version && e.Color != p.Color.String() {
				t.Errorf("event %+v does not match the published pixel %+v", e, p)
			}
		}
	}
	if !slices.Equal(seqs, seqRange(3, 8)) {
		t.Fatalf("events %v, want the replay 3..5 then live 6..8", seqs)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, []byte{protocol.BinPing}); err != nil {
		t.Fatal(err)
	}
	if p := readBinFrame(t, ws); p.Type != protocol.TypePong {
		t.Fatalf("got %+v, want pong", p)
	}
}

// Events carry id and times only when fields= names them.
func TestFieldsOnRequest(t *testing.T) {
	f := newProto(t, 0, nil)
	plain, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	timed, _, err := rawDial(t, f.gw.URL, "?fields=publishedAt,id", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, plain)
	readFrame(t, timed)
	f.pub.Publish(1)
	for name, tc := range map[string]struct {
		ws   *websocket.Conn
		want []string
	}{
		"plain": {plain, []string{"seq", "gx", "gy", "color", "version"}},
		"timed": {timed, []string{"seq", "id", "gx", "gy", "color", "version", "publishedAt"}},
	} {
		_ = tc.ws.SetReadDeadline(time.Now().Add(waitFor))
		var fr struct {
			Events []map[string]json.RawMessage `json:"events"`
		}
		if err := tc.ws.ReadJSON(&fr); err != nil || len(fr.Events) != 1 {
			t.Fatalf("%s: %+v %v", name, fr, err)
		}
		var got []string
		for k := range fr.Events[0] {
			got = append(got, k)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s: event members %v, want %v", name, got, want)
		}
	}
}

// A bad fields= list, or a subprotocol this gateway does not speak, is
// refused before the upgrade with 400 and a JSON error that says what is
// wrong; nothing is registered.
func TestHandshakeRefusesFieldsAndSubprotocols(t *testing.T) {
	f := newProto(t, 0, nil)
	for _, tc := range []struct {
		name, query string
		hdr         http.Header
		mention     string
	}{
		{"unknown field", "?fields=id,color", nil, `"color"`},
		{"field twice", "?fields=id,id", nil, "twice"},
		{"fields twice", "?fields=id&fields=committedAt", nil, "at most once"},
		{"fields with binary", "?fields=id", binHeader(), protocol.SubprotocolBinary},
		{"unknown subprotocol", "", http.Header{"Sec-Websocket-Protocol": {"pixelflow.v2.bin"}}, protocol.SubprotocolBinary},
		{"several unknown", "", http.Header{"Sec-Websocket-Protocol": {"mqtt, wamp.2.json"}}, "mqtt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := rawDial(t, f.gw.URL, tc.query, tc.hdr)
			if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("%v %v, want 400", resp, err)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("error body: %v", err)
			}
			if body.Error.Code != "invalid" || !strings.Contains(body.Error.Message, tc.mention) {
				t.Errorf("error %+v, want invalid mentioning %s", body.Error, tc.mention)
			}
		})
	}
	if n := f.gw.G.Stats().Clients; n != 0 {
		t.Errorf("%d clients registered by refused handshakes", n)
	}
}

// On a binary connection the only client message is the one-byte ping;
// anything else closes that connection with the matching close code and
// leaves the others alone.
func TestBinaryClientFramesPolicedPerConnection(t *testing.T) {
	f := newProto(t, 0, nil)
	bystander, _, err := rawDial(t, f.gw.URL, "", binHeader())
	if err != nil {
		t.Fatal(err)
	}
	readBinFrame(t, bystander) // hello
	cases := []struct {
		name string
		mt   int
		data []byte
		code int
	}{
		{"text", websocket.TextMessage, []byte(`{"type":"ping"}`), websocket.CloseUnsupportedData},
		{"empty", websocket.BinaryMessage, nil, websocket.CloseInvalidFramePayloadData},
		{"ping with a payload", websocket.BinaryMessage, []byte{protocol.BinPing, 0}, websocket.CloseInvalidFramePayloadData},
		{"a server message", websocket.BinaryMessage, []byte{protocol.BinHello, 0, 0, 0}, websocket.ClosePolicyViolation},
		{"unknown type", websocket.BinaryMessage, []byte{0xff}, websocket.ClosePolicyViolation},
		{"oversized", websocket.BinaryMessage, append([]byte{protocol.BinPing}, make([]byte, 2000)...), websocket.CloseMessageTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, err := rawDial(t, f.gw.URL, "", binHeader())
			if err != nil {
				t.Fatal(err)
			}
			readBinFrame(t, ws)
			if err := ws.WriteMessage(tc.mt, tc.data); err != nil {
				t.Fatal(err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(waitFor))
			_, _, err = ws.ReadMessage()
			var ce *websocket.CloseError
			// gorilla/websocket sends 1009 itself, without a reason.
			if !errors.As(err, &ce) || ce.Code != tc.code || ce.Text == "" && tc.code != websocket.CloseMessageTooBig {
				t.Fatalf("read after bad message: %v, want close %d with a reason", err, tc.code)
			}
		})
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if n := f.gw.G.Stats().Clients; n != 1 {
			return fmt.Errorf("%d clients, want the bystander alone", n)
		}
		return nil
	})
	f.pub.Publish(3)
	var seqs []uint64
	for len(seqs) < 3 {
		fr := readBinFrame(t, bystander)
		for _, e := range fr.Events {
			seqs = append(seqs, e.Seq)
		}
	}
	if !slices.Equal(seqs, seqRange(1, 3)) {
		t.Fatalf("bystander got %v", seqs)
	}
}
