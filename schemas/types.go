package schemas

// constructors maps each catalogue event to its generated Go type. It is
// kept by hand next to the generated code; TestCatalog fails when an .avsc
// has no entry here.
var constructors = map[string]func() Event{
	"eventline.orders.OrderCreated":          func() Event { return &OrderCreated{} },
	"eventline.orders.OrderConfirmed":        func() Event { return &OrderConfirmed{} },
	"eventline.orders.OrderCancelled":        func() Event { return &OrderCancelled{} },
	"eventline.inventory.InventoryReserved":  func() Event { return &InventoryReserved{} },
	"eventline.inventory.InventoryConfirmed": func() Event { return &InventoryConfirmed{} },
	"eventline.inventory.InventoryReleased":  func() Event { return &InventoryReleased{} },
	"eventline.inventory.StockDepleted":      func() Event { return &StockDepleted{} },
	"eventline.inventory.StockReplenished":   func() Event { return &StockReplenished{} },
}

// New returns a new zero value of the generated type of the event whose Avro
// full name is name.
func New(name string) (Event, bool) {
	c, ok := constructors[name]
	if !ok {
		return nil, false
	}
	return c(), true
}
