package bsonkit

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// Transform will transform an arbitrary value into a document composed of known
// primitives.
func Transform(v interface{}) (Doc, error) {
	// pixelflow patch 5: maps and documents of plain values (the filters,
	// updates and projections callers build) are converted directly, to
	// what the marshal round trip below would give them
	if doc, ok := transformFast(v); ok {
		return &doc, nil
	}

	// transfer
	var doc bson.D
	err := Transfer(v, &doc)
	if err != nil {
		return nil, err
	}

	return &doc, nil
}

// TransformList will transform an arbitrary value info a list of documents
// composed of known primitives.
func TransformList(v interface{}) (List, error) {
	// transform value
	doc, err := Transform(bson.M{"v": v})
	if err != nil {
		return nil, err
	}

	// get array
	array, ok := (*doc)[0].Value.(bson.A)
	if !ok {
		return nil, fmt.Errorf("expected array")
	}

	// build list
	list := make(List, 0, len(array))
	for _, item := range array {
		doc, ok := item.(bson.D)
		if !ok {
			return nil, fmt.Errorf("expected array of documents")
		}
		list = append(list, &doc)
	}

	return list, nil
}

// Transfer will transfer data from one type to another by marshalling the data
// and unmarshalling it again. This method is not very fast, but it ensures
// compatibility with custom types that implement the bson.Marshaller interface.
func Transfer(in, out interface{}) error {
	// marshal to bytes
	bytes, err := bson.Marshal(in)
	if err != nil {
		return err
	}

	// unmarshal bytes
	err = bson.Unmarshal(bytes, out)
	if err != nil {
		return err
	}

	return nil
}

// transformFast converts v as Transfer into a bson.D would, when v is a
// bson.M, map[string]interface{} or bson.D whose values are all of the
// types handled below (nested the same way); otherwise it reports false
// and the caller marshals. Map keys come out sorted (Transfer gives Go's
// random map order, so no caller can depend on an order).
func transformFast(v interface{}) (bson.D, bool) {
	switch v.(type) {
	case bson.M, map[string]interface{}, bson.D:
	default:
		return nil, false
	}
	out, ok := fastValue(v)
	if !ok {
		return nil, false
	}
	return out.(bson.D), true
}

// fastValue converts one value as the driver's default registry encodes it
// and decodes it back into an interface{} under a bson.D.
func fastValue(v interface{}) (interface{}, bool) {
	switch value := v.(type) {
	case nil:
		return nil, true
	case string, bool, float64, int32, int64,
		primitive.ObjectID, primitive.DateTime, primitive.Timestamp,
		primitive.Decimal128, primitive.Regex:
		return value, true
	case int: // the driver writes an int as int32 when it fits
		if value >= math.MinInt32 && value <= math.MaxInt32 {
			return int32(value), true
		}
		return int64(value), true
	case time.Time: // a BSON datetime: milliseconds
		return primitive.NewDateTimeFromTime(value), true
	case bson.M:
		return fastMap(value)
	case map[string]interface{}:
		return fastMap(value)
	case bson.D:
		d := make(bson.D, len(value))
		for i, e := range value {
			if strings.IndexByte(e.Key, 0) >= 0 {
				return nil, false
			}
			c, ok := fastValue(e.Value)
			if !ok {
				return nil, false
			}
			d[i] = bson.E{Key: e.Key, Value: c}
		}
		return d, true
	case bson.A:
		a := make(bson.A, len(value))
		for i, item := range value {
			c, ok := fastValue(item)
			if !ok {
				return nil, false
			}
			a[i] = c
		}
		return a, true
	default:
		return nil, false
	}
}

func fastMap(m map[string]interface{}) (interface{}, bool) {
	d := make(bson.D, 0, len(m))
	for k, item := range m {
		if strings.IndexByte(k, 0) >= 0 { // the driver refuses the key
			return nil, false
		}
		c, ok := fastValue(item)
		if !ok {
			return nil, false
		}
		d = append(d, bson.E{Key: k, Value: c})
	}
	sort.Slice(d, func(i, j int) bool { return d[i].Key < d[j].Key })
	return d, true
}
