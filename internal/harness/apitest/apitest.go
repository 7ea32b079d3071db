// Package apitest holds the bad-request table that every layer which
// serves POST /api/pixels is held to: the in-process program tests and the
// end-to-end suites against real processes run the same cases.
package apitest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// BadRequest is one malformed POST /api/pixels and the answer it must get.
type BadRequest struct {
	Name, Body, ContentType string
	Status                  int
	Code                    string
}

// BadRequests lists malformed writes for a canvas width×height.
func BadRequests(width, height int) []BadRequest {
	return []BadRequest{
		{"out of range x", `{"gx":` + strconv.Itoa(width) + `,"gy":0,"color":"#FFFFFF"}`, "", 400, "invalid"},
		{"out of range y", `{"gx":0,"gy":` + strconv.Itoa(height) + `,"color":"#FFFFFF"}`, "", 400, "invalid"},
		{"negative y", `{"gx":0,"gy":-1,"color":"#FFFFFF"}`, "", 400, "invalid"},
		{"fractional", `{"gx":1.5,"gy":0,"color":"#FFFFFF"}`, "", 400, "invalid"},
		{"string coordinate", `{"gx":"1","gy":0,"color":"#FFFFFF"}`, "", 400, "invalid"},
		{"bad colour", `{"gx":1,"gy":1,"color":"red"}`, "", 400, "invalid"},
		{"short colour", `{"gx":1,"gy":1,"color":"#FFF"}`, "", 400, "invalid"},
		{"missing colour", `{"gx":1,"gy":1}`, "", 400, "invalid"},
		{"unknown field", `{"gx":1,"gy":1,"color":"#FFFFFF","x":1}`, "", 400, "invalid"},
		{"not json", `gx=1`, "", 400, "invalid"},
		{"two objects", `{"gx":1,"gy":1,"color":"#FFFFFF"}{}`, "", 400, "invalid"},
		{"empty", ``, "", 400, "invalid"},
		{"too large", `{"gx":1,"gy":1,"color":"#FFFFFF","pad":"` + strings.Repeat("x", 2000) + `"}`, "", 413, "too_large"},
		{"wrong content type", `{"gx":1,"gy":1,"color":"#FFFFFF"}`, "text/plain", 415, "unsupported_media_type"},
	}
}

// CheckBadRequests sends every bad request (and a GET, which must be 405)
// to base and fails t for any answer that is not the expected 4xx JSON
// error with a message. Whether the canvas stayed unchanged is the
// caller's to check, since only it knows how to read its store.
func CheckBadRequests(t *testing.T, base string, width, height int) {
	t.Helper()
	for _, tc := range BadRequests(width, height) {
		t.Run(tc.Name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, base+"/api/pixels", bytes.NewBufferString(tc.Body))
			ct := "application/json"
			if tc.ContentType != "" {
				ct = tc.ContentType
			}
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if resp.StatusCode != tc.Status || e.Error.Code != tc.Code || e.Error.Message == "" {
				t.Fatalf("got %d %+v, want %d %s with a message", resp.StatusCode, e.Error, tc.Status, tc.Code)
			}
		})
	}
	resp, err := http.Get(base + "/api/pixels")
	if err != nil {
		t.Fatalf("GET /api/pixels: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /api/pixels: %d, want 405", resp.StatusCode)
	}
}
