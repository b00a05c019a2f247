"""The services of the exchange: submit_order worker, process_order worker, client node."""
