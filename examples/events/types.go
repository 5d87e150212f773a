package events

import "github.com/eventline/eventline/schemas"

// constructors maps each catalogue event to its generated Go type. It is
// kept by hand next to the generated code; TestCatalog fails when an .avsc
// has no entry here.
var constructors = map[string]func() schemas.Event{
	"eventline.orders.OrderCreated":          func() schemas.Event { return &OrderCreated{} },
	"eventline.orders.OrderConfirmed":        func() schemas.Event { return &OrderConfirmed{} },
	"eventline.orders.OrderCancelled":        func() schemas.Event { return &OrderCancelled{} },
	"eventline.inventory.InventoryReserved":  func() schemas.Event { return &InventoryReserved{} },
	"eventline.inventory.InventoryConfirmed": func() schemas.Event { return &InventoryConfirmed{} },
	"eventline.inventory.InventoryReleased":  func() schemas.Event { return &InventoryReleased{} },
	"eventline.inventory.StockDepleted":      func() schemas.Event { return &StockDepleted{} },
	"eventline.inventory.StockReplenished":   func() schemas.Event { return &StockReplenished{} },
}

// New returns a new zero value of the generated type of the event whose Avro
// full name is name.
func New(name string) (schemas.Event, bool) {
	c, ok := constructors[name]
	if !ok {
		return nil, false
	}
	return c(), true
}
