package compat_test

import (
	"fmt"

	"github.com/hamba/avro/v2"

	"github.com/eventline/eventline/schemas/compat"
)

func ExampleCheck() {
	v1, err := compat.Parse(`{"type":"record","name":"Payment","fields":[
		{"name":"amount","type":"long"},
		{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","REFUNDED"]}}]}`)
	if err != nil {
		panic(err)
	}
	v2, err := compat.Parse(`{"type":"record","name":"Payment","fields":[
		{"name":"amount","type":"long"},
		{"name":"currency","type":"string"},
		{"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID"]}}]}`)
	if err != nil {
		panic(err)
	}

	res := compat.Check(compat.Backward, v2, []avro.Schema{v1})
	fmt.Println("compatible:", res.Compatible)
	for _, m := range res.Messages() {
		fmt.Println(m)
	}
	// Output:
	// compatible: false
	// version 1 (backward) /fields/currency: reader field `currency` (string) is not in writer record `Payment` and has no default — hint: add a default to reader field `currency` (e.g. "default": ""), or an alias naming the writer field it replaces
	// version 1 (backward) /fields/status/type/symbols: field `status`: reader enum `Status` lacks writer symbol `REFUNDED` — hint: keep symbol `REFUNDED` in enum `Status`, or give enum `Status` a default symbol to read unknown symbols as
}
